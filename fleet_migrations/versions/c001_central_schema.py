"""central schema: the shipped tables keyed by node, fleet_nodes, fleet_actions

Revision ID: c001
Revises:
Create Date: 2026-11-29 03:04:16.490177
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ffrtmp.utctime import UTCDateTime

revision: str = "c001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "daemon_runs",
        sa.Column("node_id", sa.Text(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("started_at", UTCDateTime(), autoincrement=False, nullable=False),
        sa.Column("stopped_at", UTCDateTime(), autoincrement=False, nullable=True),
        sa.Column("stop_reason", sa.Text(), autoincrement=False, nullable=True),
        sa.Column("pid", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hostname", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("version", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("discovery", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("cgroup_version", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.Column("cgroup_parent", sa.Text(), autoincrement=False, nullable=True),
        sa.Column("config", sa.JSON(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("node_id", "id", name=op.f("pk_daemon_runs")),
    )
    op.create_table(
        "error_events",
        sa.Column("node_id", sa.Text(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("occurred_at", UTCDateTime(), autoincrement=False, nullable=False),
        sa.Column("operation", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("process_id", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.Column("pid", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.Column("error_type", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("retryable", sa.Boolean(), autoincrement=False, nullable=False),
        sa.Column("errno", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.Column("errno_name", sa.Text(), autoincrement=False, nullable=True),
        sa.Column("exception", sa.Text(), autoincrement=False, nullable=True),
        sa.Column("message", sa.Text(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("node_id", "id", name=op.f("pk_error_events")),
    )
    op.create_index(
        "ix_error_events_node_error_type_occurred_at",
        "error_events",
        ["node_id", "error_type", "occurred_at"],
        unique=False,
    )
    op.create_index(
        "ix_error_events_node_occurred_at", "error_events", ["node_id", "occurred_at"], unique=False
    )
    op.create_index(
        "ix_error_events_node_process_id", "error_events", ["node_id", "process_id"], unique=False
    )
    op.create_table(
        "fleet_actions",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("node_id", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("retry_id", sa.BigInteger(), nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("done_at", UTCDateTime(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_actions")),
    )
    op.create_index(
        "ix_fleet_actions_node_id_state", "fleet_actions", ["node_id", "state"], unique=False
    )
    op.create_table(
        "fleet_nodes",
        sa.Column("node_id", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), server_default=sa.text("CURRENT_USER"), nullable=False),
        sa.Column("hostname", sa.Text(), nullable=False),
        sa.Column("machine_id", sa.Text(), nullable=False),
        sa.Column("ffrtmp_version", sa.Text(), nullable=False),
        sa.Column("first_shipped_at", UTCDateTime(), nullable=False),
        sa.Column("last_contact_at", UTCDateTime(), nullable=False),
        sa.Column("last_shipped_at", UTCDateTime(), nullable=True),
        sa.Column("shipped_seq", sa.BigInteger(), nullable=False),
        sa.Column("pending_changes", sa.BigInteger(), nullable=False),
        sa.Column("oldest_pending_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_fleet_nodes")),
    )
    op.create_table(
        "health_snapshots",
        sa.Column("node_id", sa.Text(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("taken_at", UTCDateTime(), autoincrement=False, nullable=False),
        sa.Column("daemon_run_id", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.Column("status", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("reasons", sa.JSON(), autoincrement=False, nullable=False),
        sa.Column("last_scan_at", UTCDateTime(), autoincrement=False, nullable=True),
        sa.Column("last_successful_scan_at", UTCDateTime(), autoincrement=False, nullable=True),
        sa.Column(
            "consecutive_scan_failures", sa.BigInteger(), autoincrement=False, nullable=False
        ),
        sa.Column(
            "consecutive_attach_failures", sa.BigInteger(), autoincrement=False, nullable=False
        ),
        sa.Column("total_scan_failures", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("total_attach_failures", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("retry_pending", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("dead_letters", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("errors_by_type", sa.JSON(), autoincrement=False, nullable=False),
        sa.Column("details", sa.JSON(), autoincrement=False, nullable=True),
        sa.PrimaryKeyConstraint("node_id", "id", name=op.f("pk_health_snapshots")),
    )
    op.create_index(
        "ix_health_snapshots_node_taken_at",
        "health_snapshots",
        ["node_id", "taken_at"],
        unique=False,
    )
    op.create_table(
        "process_events",
        sa.Column("node_id", sa.Text(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("process_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("occurred_at", UTCDateTime(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("details", sa.JSON(), autoincrement=False, nullable=True),
        sa.PrimaryKeyConstraint("node_id", "id", name=op.f("pk_process_events")),
    )
    op.create_index(
        "ix_process_events_node_occurred_at",
        "process_events",
        ["node_id", "occurred_at"],
        unique=False,
    )
    op.create_index(
        "ix_process_events_node_process_id_occurred_at",
        "process_events",
        ["node_id", "process_id", "occurred_at"],
        unique=False,
    )
    op.create_table(
        "processes",
        sa.Column("node_id", sa.Text(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("boot_id", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("pid", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("start_ticks", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("started_at", UTCDateTime(), autoincrement=False, nullable=False),
        sa.Column("command", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("argv", sa.JSON(), autoincrement=False, nullable=False),
        sa.Column("exe", sa.Text(), autoincrement=False, nullable=True),
        sa.Column("ppid", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.Column("uid", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.Column("user", sa.Text(), autoincrement=False, nullable=True),
        sa.Column("cwd", sa.Text(), autoincrement=False, nullable=True),
        sa.Column("rule", sa.Text(), autoincrement=False, nullable=True),
        sa.Column("job_id", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("state", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("state_reason", sa.Text(), autoincrement=False, nullable=True),
        sa.Column("requested_cpu_quota", sa.Float(), autoincrement=False, nullable=True),
        sa.Column("requested_cpu_weight", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.Column("requested_memory_limit_mb", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.Column("applied_cpu_quota", sa.Float(), autoincrement=False, nullable=True),
        sa.Column("applied_cpu_weight", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.Column("applied_memory_limit_mb", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.Column("cgroup_version", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.Column("cgroup_paths", sa.JSON(), autoincrement=False, nullable=True),
        sa.Column("discovered_at", UTCDateTime(), autoincrement=False, nullable=False),
        sa.Column("attached_at", UTCDateTime(), autoincrement=False, nullable=True),
        sa.Column("last_seen_at", UTCDateTime(), autoincrement=False, nullable=False),
        sa.Column("exited_at", UTCDateTime(), autoincrement=False, nullable=True),
        sa.Column("exit_code", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.Column("exit_signal", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.Column("exit_reason", sa.Text(), autoincrement=False, nullable=True),
        sa.Column("oom_killed", sa.Boolean(), autoincrement=False, nullable=True),
        sa.Column("peak_memory_bytes", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.Column("cpu_seconds", sa.Float(), autoincrement=False, nullable=True),
        sa.Column("run_seconds", sa.Float(), autoincrement=False, nullable=True),
        sa.PrimaryKeyConstraint("node_id", "id", name=op.f("pk_processes")),
        sa.UniqueConstraint(
            "node_id",
            "boot_id",
            "pid",
            "start_ticks",
            name=op.f("uq_processes_node_id_boot_id_pid_start_ticks"),
        ),
    )
    op.create_index(
        "ix_processes_node_command_discovered_at",
        "processes",
        ["node_id", "command", "discovered_at"],
        unique=False,
    )
    op.create_index(
        "ix_processes_node_discovered_at", "processes", ["node_id", "discovered_at"], unique=False
    )
    op.create_index(
        "ix_processes_node_exited_at", "processes", ["node_id", "exited_at"], unique=False
    )
    op.create_index("ix_processes_node_pid", "processes", ["node_id", "pid"], unique=False)
    op.create_index(
        "ix_processes_node_state_discovered_at",
        "processes",
        ["node_id", "state", "discovered_at"],
        unique=False,
    )
    op.create_table(
        "retry_items",
        sa.Column("node_id", sa.Text(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("process_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("operation", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("state", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("attempt", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("max_attempts", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("created_at", UTCDateTime(), autoincrement=False, nullable=False),
        sa.Column("updated_at", UTCDateTime(), autoincrement=False, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), autoincrement=False, nullable=True),
        sa.Column("last_attempt_at", UTCDateTime(), autoincrement=False, nullable=True),
        sa.Column("last_error", sa.Text(), autoincrement=False, nullable=True),
        sa.Column("last_error_type", sa.Text(), autoincrement=False, nullable=True),
        sa.Column("claimed_until", UTCDateTime(), autoincrement=False, nullable=True),
        sa.Column("final_reason", sa.Text(), autoincrement=False, nullable=True),
        sa.PrimaryKeyConstraint("node_id", "id", name=op.f("pk_retry_items")),
        sa.UniqueConstraint(
            "node_id", "process_id", name=op.f("uq_retry_items_node_id_process_id")
        ),
    )
    op.create_index(
        "ix_retry_items_node_state_next_attempt_at",
        "retry_items",
        ["node_id", "state", "next_attempt_at"],
        unique=False,
    )
    op.create_table(
        "scans",
        sa.Column("node_id", sa.Text(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("started_at", UTCDateTime(), autoincrement=False, nullable=False),
        sa.Column("duration_ms", sa.Float(), autoincrement=False, nullable=False),
        sa.Column("trigger", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("ok", sa.Boolean(), autoincrement=False, nullable=False),
        sa.Column("seen", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("matched", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("new", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("unreadable", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("errors", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("node_id", "id", name=op.f("pk_scans")),
    )
    op.create_index("ix_scans_node_started_at", "scans", ["node_id", "started_at"], unique=False)


def downgrade() -> None:

    op.drop_index("ix_scans_node_started_at", table_name="scans")
    op.drop_table("scans")
    op.drop_index("ix_retry_items_node_state_next_attempt_at", table_name="retry_items")
    op.drop_table("retry_items")
    op.drop_index("ix_processes_node_state_discovered_at", table_name="processes")
    op.drop_index("ix_processes_node_pid", table_name="processes")
    op.drop_index("ix_processes_node_exited_at", table_name="processes")
    op.drop_index("ix_processes_node_discovered_at", table_name="processes")
    op.drop_index("ix_processes_node_command_discovered_at", table_name="processes")
    op.drop_table("processes")
    op.drop_index("ix_process_events_node_process_id_occurred_at", table_name="process_events")
    op.drop_index("ix_process_events_node_occurred_at", table_name="process_events")
    op.drop_table("process_events")
    op.drop_index("ix_health_snapshots_node_taken_at", table_name="health_snapshots")
    op.drop_table("health_snapshots")
    op.drop_table("fleet_nodes")
    op.drop_index("ix_fleet_actions_node_id_state", table_name="fleet_actions")
    op.drop_table("fleet_actions")
    op.drop_index("ix_error_events_node_process_id", table_name="error_events")
    op.drop_index("ix_error_events_node_occurred_at", table_name="error_events")
    op.drop_index("ix_error_events_node_error_type_occurred_at", table_name="error_events")
    op.drop_table("error_events")
    op.drop_table("daemon_runs")
