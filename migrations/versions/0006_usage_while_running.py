"""usage while running: the latest cgroup sample of a governed process on its row

Revision ID: 0006
Revises: 0002
Create Date: 2026-11-29 03:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_COLUMNS = (
    ("usage_sampled_at", sa.DateTime()),
    ("memory_current_bytes", sa.Integer()),
    ("cpu_periods", sa.Integer()),
    ("cpu_throttled_periods", sa.Integer()),
    ("cpu_throttled_seconds", sa.Float()),
)


def upgrade() -> None:
    with op.batch_alter_table("processes") as batch:
        for name, type_ in NEW_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("processes") as batch:
        for name, _type in reversed(NEW_COLUMNS):
            batch.drop_column(name)
