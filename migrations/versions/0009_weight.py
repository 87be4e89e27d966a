"""memory named for what it is: the process's own peak resident size beside the cgroup's peak

Revision ID: 0009_weight
Revises: 0008
Create Date: 2026-12-07 18:30:00.000000

process_peak_rss_bytes: VmHWM of /proc/<pid>/status, the highest resident size the process
had over its whole life, at the last sample. memory_charge_moved: whether the memory charged
to it before the attach moved into its job cgroup (cgroup v1 memory.move_charge_at_immigrate);
false on cgroup v2, which cannot move charges. Both null on older rows.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_weight"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_COLUMNS = (
    ("process_peak_rss_bytes", sa.Integer()),
    ("memory_charge_moved", sa.Boolean()),
)


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN (batch mode does not rebuild the table for it), so the
    # shipping triggers of revision 0008 stay in place.
    with op.batch_alter_table("processes") as batch:
        for name, type_ in NEW_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("processes") as batch:
        for name, _type in reversed(NEW_COLUMNS):
            batch.drop_column(name)
