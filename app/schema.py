"""The database schema: a public interface, documented in docs/schema.md.

The one definition of every table, in SQLAlchemy Core: the daemon writes through the classes
ffrtmp.models maps onto these tables, Alembic compares the migrations with this metadata, and the
read commands query app/read_tables.py, generated from it by read_tables_source() (building
these Table objects would cost them 5 ms of start-up, loading the ORM 80 ms).
Change it only through a migration in migrations/versions/. All times are UTC.
"""

from __future__ import annotations

import textwrap

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

from ffrtmp.utctime import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# One row per start of `ffrtmp watch`.
daemon_runs = Table(
    "daemon_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("stopped_at", UTCDateTime),
    Column("stop_reason", String(64)),
    Column("pid", Integer, nullable=False),
    Column("hostname", String(255), nullable=False),
    Column("version", String(32), nullable=False),
    Column("discovery", String(16), nullable=False),
    Column("cgroup_version", Integer),
    Column("cgroup_parent", Text),
    Column("config", JSON, nullable=False),
    # A `watch --once` run: it never speaks for the daemon in `ffrtmp health` (revision 0003).
    Column("once", Boolean, nullable=False, server_default=false()),
)

# One row per process instance: (boot_id, pid, start_ticks) is unique.
processes = Table(
    "processes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("boot_id", String(36), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("start_ticks", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("command", String(255), nullable=False),
    Column("argv", JSON, nullable=False),  # capped at ARGV_STORED_BYTES (revision 0005)
    Column("argv_bytes", Integer),  # the full command line's length, and its hash (0005)
    Column("argv_sha256", String(64)),
    Column("exe", Text),
    Column("ppid", Integer),
    Column("uid", Integer),
    Column("user", String(255)),
    Column("cwd", Text),
    Column("rule", String(255)),
    Column("job_id", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("state_reason", Text),
    Column("requested_cpu_quota", Float),
    Column("requested_cpu_weight", Integer),
    Column("requested_memory_limit_mb", Integer),
    Column("applied_cpu_quota", Float),
    Column("applied_cpu_weight", Integer),
    Column("applied_memory_limit_mb", Integer),
    Column("cgroup_version", Integer),
    Column("cgroup_paths", JSON),
    Column("discovered_at", UTCDateTime, nullable=False),
    Column("attached_at", UTCDateTime),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("exited_at", UTCDateTime),
    Column("exit_code", Integer),
    Column("exit_signal", Integer),
    Column("exit_reason", Text),
    Column("oom_killed", Boolean),
    Column("peak_memory_bytes", Integer),
    Column("cpu_seconds", Float),
    Column("run_seconds", Float),
    # The latest cgroup sample while it runs (revision 0006); cpu_seconds and
    # peak_memory_bytes above are kept current with it too.
    Column("usage_sampled_at", UTCDateTime),
    Column("memory_current_bytes", Integer),
    Column("cpu_periods", Integer),
    Column("cpu_throttled_periods", Integer),
    Column("cpu_throttled_seconds", Float),
    # The cgroups it was in before it was attached, as /proc/<pid>/cgroup lines (revision 0003).
    Column("origin_cgroups", JSON),
    # The process's own high-water resident size (VmHWM), beside the job cgroup's peak above,
    # and whether the memory charged before the attach moved into the job cgroup (0009).
    Column("process_peak_rss_bytes", Integer),
    Column("memory_charge_moved", Boolean),
    UniqueConstraint("boot_id", "pid", "start_ticks"),
    Index("ix_processes_state_discovered_at", "state", "discovered_at"),
    Index("ix_processes_pid", "pid"),
    Index("ix_processes_exited_at", "exited_at"),
    # `processes list`, newest first, alone or with --since / --command (revision 0002).
    Index("ix_processes_discovered_at", "discovered_at"),
    Index("ix_processes_command_discovered_at", "command", "discovered_at"),
)

# Append-only audit trail of what happened to a process.
process_events = Table(
    "process_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("process_id", Integer, ForeignKey("processes.id", ondelete="CASCADE"), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("details", JSON),
    Index("ix_process_events_process_id_occurred_at", "process_id", "occurred_at"),
    Index("ix_process_events_occurred_at", "occurred_at"),
)

# At most one per process: the retry queue (state 'pending') and the dead-letter list
# (state 'dead').
retry_items = Table(
    "retry_items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("process_id", Integer, ForeignKey("processes.id", ondelete="CASCADE"), nullable=False),
    Column("operation", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("next_attempt_at", UTCDateTime),
    Column("last_attempt_at", UTCDateTime),
    Column("last_error", Text),
    Column("last_error_type", String(16)),
    Column("claimed_until", UTCDateTime),
    Column("final_reason", Text),
    # A dead letter whose process ended is closed: history, not actionable (revision 0003).
    Column("closed_at", UTCDateTime),
    Column("closed_reason", Text),
    UniqueConstraint("process_id"),
    Index("ix_retry_items_state_next_attempt_at", "state", "next_attempt_at"),
)

# Every error the daemon met, classified.
error_events = Table(
    "error_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("operation", String(32), nullable=False),
    Column("process_id", Integer, ForeignKey("processes.id", ondelete="SET NULL"), index=True),
    Column("pid", Integer),
    Column("error_type", String(16), nullable=False),
    Column("retryable", Boolean, nullable=False),
    Column("errno", Integer),
    Column("errno_name", String(32)),
    Column("exception", String(255)),
    Column("message", Text, nullable=False),
    Index("ix_error_events_occurred_at", "occurred_at"),
    Index("ix_error_events_error_type_occurred_at", "error_type", "occurred_at"),
)

# One full pass over the process table (or one event-triggered look at one process).
scans = Table(
    "scans",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("seen", Integer, nullable=False),
    Column("matched", Integer, nullable=False),
    Column("new", Integer, nullable=False),
    Column("unreadable", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Index("ix_scans_started_at", "started_at"),
)

# The health verdict and the counters behind it, on every change and at least every minute.
health_snapshots = Table(
    "health_snapshots",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("taken_at", UTCDateTime, nullable=False),
    Column("daemon_run_id", Integer, ForeignKey("daemon_runs.id", ondelete="SET NULL")),
    Column("status", String(16), nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("last_scan_at", UTCDateTime),
    Column("last_successful_scan_at", UTCDateTime),
    Column("consecutive_scan_failures", Integer, nullable=False),
    Column("consecutive_attach_failures", Integer, nullable=False),
    Column("total_scan_failures", Integer, nullable=False),
    Column("total_attach_failures", Integer, nullable=False),
    Column("retry_pending", Integer, nullable=False),
    Column("dead_letters", Integer, nullable=False),
    Column("errors_by_type", JSON, nullable=False),
    Column("details", JSON),
    Column("status_since", UTCDateTime),  # revision 0003
    Column("last_successful_attach_at", UTCDateTime),  # revision 0003
    Index("ix_health_snapshots_taken_at", "taken_at"),
)


# The node this database ships to the fleet's central database as (ffrtmp.fleet): one row, made
# the first time it ships. Its id is the machine id and a random suffix, so two databases on one
# machine are two nodes (their row ids overlap); the label is the human name.
ship_node = Table(
    "ship_node",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("node_id", String(64), nullable=False),
    Column("label", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# The change cursor of shipping: the rows changed since the centre last had them, each once,
# under the number of its latest change (the triggers of ffrtmp.change_log REPLACE the entry, so
# a row changed while a batch ships gets a number past that batch). Written only once
# ship_node has its row; removed once the centre has the row.
ship_changes = Table(
    "ship_changes",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("table_name", String(32), nullable=False),
    Column("row_id", Integer, nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    UniqueConstraint("table_name", "row_id"),
    sqlite_autoincrement=True,
)

# Tables that describe shipping itself and are never shipped.
LOCAL_ONLY_TABLES = ("ship_node", "ship_changes")


def read_tables_source() -> str:
    """The source of app/read_tables.py: every table above as a light table()/column() clause
    with each column's type, which is all a read query needs of it. Written as "name:Type"
    text, which Python compiles in a third of the time the same calls written out take."""
    kinds = {type(col.type) for tbl in metadata.tables.values() for col in tbl.columns}
    # In the order ruff sorts imports: constants (JSON) before classes.
    names = sorted((kind.__name__ for kind in kinds), key=lambda name: (name != name.upper(), name))
    lines = [
        '"""The tables of app/schema.py as light table()/column() clauses for the read commands.',
        "",
        "GENERATED by `python -m ffrtmp.schema > app/read_tables.py`: do not edit.",
        "tests/store/test_migrations.py fails when this file and schema.py disagree. The schema's",
        "Table objects (constraints, indexes, events) would cost a read command about 5 ms of its",
        "start-up; these clauses cost a tenth of that and are all a query needs.",
        '"""',
        "",
        "from sqlalchemy import "
        + ", ".join([name for name in names if name != "UTCDateTime"] + ["column", "table"]),
        "from sqlalchemy.sql.expression import TableClause",
        "",
        "from ffrtmp.utctime import UTCDateTime",
        "",
        "_TYPES = {",
        *(f'    "{name}": {name},' for name in names),
        "}",
        "",
        "",
        "def _table(name: str, columns: str) -> TableClause:",
        '    pairs = (spec.split(":") for spec in columns.split())',
        "    return table(name, *(column(col, _TYPES[kind]) for col, kind in pairs))",
    ]
    for name, tbl in metadata.tables.items():
        specs = " ".join(f"{col.name}:{type(col.type).__name__}" for col in tbl.columns)
        parts = textwrap.wrap(specs, 90)
        lines += ["", "", f"{name} = _table(", f'    "{name}",']
        lines += [f'    "{part} "' for part in parts[:-1]] + [f'    "{parts[-1]}",', ")"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(read_tables_source(), end="")
