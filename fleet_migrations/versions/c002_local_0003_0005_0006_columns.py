"""columns of local revisions 0003, 0005, 0006

Revision ID: c002
Revises: c001
Create Date: 2026-11-29 03:51:54.830944
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ffrtmp.utctime import UTCDateTime

revision: str = "c002"
down_revision: str | None = "c001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NOT NULL on a centre that holds runs already: they were shipped before any node had
    # revision 0003, which sets `once` false on every existing local run too. The default only
    # fills those rows; the derived table has none, so it is dropped again.
    op.add_column(
        "daemon_runs",
        sa.Column(
            "once", sa.Boolean(), autoincrement=False, nullable=False, server_default=sa.false()
        ),
    )
    op.alter_column("daemon_runs", "once", server_default=None)
    op.add_column(
        "health_snapshots",
        sa.Column("status_since", UTCDateTime(), autoincrement=False, nullable=True),
    )
    op.add_column(
        "health_snapshots",
        sa.Column("last_successful_attach_at", UTCDateTime(), autoincrement=False, nullable=True),
    )
    op.add_column(
        "processes", sa.Column("argv_bytes", sa.BigInteger(), autoincrement=False, nullable=True)
    )
    op.add_column(
        "processes", sa.Column("argv_sha256", sa.Text(), autoincrement=False, nullable=True)
    )
    op.add_column(
        "processes",
        sa.Column("usage_sampled_at", UTCDateTime(), autoincrement=False, nullable=True),
    )
    op.add_column(
        "processes",
        sa.Column("memory_current_bytes", sa.BigInteger(), autoincrement=False, nullable=True),
    )
    op.add_column(
        "processes", sa.Column("cpu_periods", sa.BigInteger(), autoincrement=False, nullable=True)
    )
    op.add_column(
        "processes",
        sa.Column("cpu_throttled_periods", sa.BigInteger(), autoincrement=False, nullable=True),
    )
    op.add_column(
        "processes",
        sa.Column("cpu_throttled_seconds", sa.Float(), autoincrement=False, nullable=True),
    )
    op.add_column(
        "processes", sa.Column("origin_cgroups", sa.JSON(), autoincrement=False, nullable=True)
    )
    op.add_column(
        "retry_items", sa.Column("closed_at", UTCDateTime(), autoincrement=False, nullable=True)
    )
    op.add_column(
        "retry_items", sa.Column("closed_reason", sa.Text(), autoincrement=False, nullable=True)
    )


def downgrade() -> None:
    op.drop_column("retry_items", "closed_reason")
    op.drop_column("retry_items", "closed_at")
    op.drop_column("processes", "origin_cgroups")
    op.drop_column("processes", "cpu_throttled_seconds")
    op.drop_column("processes", "cpu_throttled_periods")
    op.drop_column("processes", "cpu_periods")
    op.drop_column("processes", "memory_current_bytes")
    op.drop_column("processes", "usage_sampled_at")
    op.drop_column("processes", "argv_sha256")
    op.drop_column("processes", "argv_bytes")
    op.drop_column("health_snapshots", "last_successful_attach_at")
    op.drop_column("health_snapshots", "status_since")
    op.drop_column("daemon_runs", "once")
