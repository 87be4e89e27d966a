"""columns of local revision 0009_weight: the process's own peak resident size, and whether
its memory charge moved at the attach

Revision ID: c003_weight
Revises: c002
Create Date: 2026-12-07 18:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c003_weight"
down_revision: str | None = "c002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "processes",
        sa.Column("process_peak_rss_bytes", sa.BigInteger(), autoincrement=False, nullable=True),
    )
    op.add_column(
        "processes",
        sa.Column("memory_charge_moved", sa.Boolean(), autoincrement=False, nullable=True),
    )


def downgrade() -> None:
    op.drop_column("processes", "memory_charge_moved")
    op.drop_column("processes", "process_peak_rss_bytes")
