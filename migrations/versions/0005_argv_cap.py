"""a process's command line stored once, capped, with its full length and hash

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-29 03:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows written before this revision keep their argv as it was; their length and hash are
    # NULL (not known without reading every row, and nothing needs them).
    with op.batch_alter_table("processes") as batch:
        batch.add_column(sa.Column("argv_bytes", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("argv_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("processes") as batch:
        batch.drop_column("argv_sha256")
        batch.drop_column("argv_bytes")
