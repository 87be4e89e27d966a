"""what the operator sees is true: one-off runs, closed dead letters, origin cgroups, health since

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 03:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("daemon_runs") as batch:
        # A `watch --once` run never speaks for the daemon in `ffrtmp health`.
        batch.add_column(sa.Column("once", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE daemon_runs SET once = 1 WHERE stop_reason = 'once'")
    with op.batch_alter_table("processes") as batch:
        # Where a process was before it was attached: `ffrtmp release` moves it back there.
        batch.add_column(sa.Column("origin_cgroups", sa.JSON()))
    with op.batch_alter_table("retry_items") as batch:
        # A dead letter whose process ended is closed: kept in history, no longer actionable.
        batch.add_column(sa.Column("closed_at", sa.DateTime()))
        batch.add_column(sa.Column("closed_reason", sa.Text()))
    # Dead letters of processes that ended before this revision are history already.
    op.execute(
        "UPDATE retry_items SET closed_at = (SELECT exited_at FROM processes"
        " WHERE processes.id = retry_items.process_id), closed_reason = 'process exited'"
        " WHERE state = 'dead' AND (SELECT exited_at FROM processes"
        " WHERE processes.id = retry_items.process_id) IS NOT NULL"
    )
    with op.batch_alter_table("health_snapshots") as batch:
        batch.add_column(sa.Column("status_since", sa.DateTime()))
        batch.add_column(sa.Column("last_successful_attach_at", sa.DateTime()))


def downgrade() -> None:
    with op.batch_alter_table("health_snapshots") as batch:
        batch.drop_column("last_successful_attach_at")
        batch.drop_column("status_since")
    with op.batch_alter_table("retry_items") as batch:
        batch.drop_column("closed_reason")
        batch.drop_column("closed_at")
    with op.batch_alter_table("processes") as batch:
        batch.drop_column("origin_cgroups")
    with op.batch_alter_table("daemon_runs") as batch:
        batch.drop_column("once")
