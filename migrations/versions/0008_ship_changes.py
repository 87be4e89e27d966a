"""shipping to the fleet's central database: the node's identity and the change cursor

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-29 03:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ffrtmp import change_log
from ffrtmp.utctime import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The tables shipped at this revision. Their triggers are ffrtmp.change_log's, which a later
# revision that adds a shipped table, or rebuilds one, calls too.
# tests/fleet/test_fleet_schema.py fails when a shipped table lacks them.
SHIPPED = (
    "daemon_runs",
    "processes",
    "process_events",
    "retry_items",
    "error_events",
    "scans",
    "health_snapshots",
)


def upgrade() -> None:
    op.create_table(
        "ship_node",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ship_node")),
    )
    op.create_table(
        "ship_changes",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("table_name", sa.String(length=32), nullable=False),
        sa.Column("row_id", sa.Integer(), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_ship_changes")),
        sa.UniqueConstraint("table_name", "row_id", name=op.f("uq_ship_changes_table_name_row_id")),
        sqlite_autoincrement=True,
    )
    for table in SHIPPED:
        change_log.create_triggers(op, table)


def downgrade() -> None:
    for table in SHIPPED:
        change_log.drop_triggers(op, table)
    op.drop_table("ship_changes")
    op.drop_table("ship_node")
