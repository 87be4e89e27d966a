"""Every read the operator's commands make, as SQLAlchemy Core `select()` over the schema.

Each function takes a Connection (from the read-only engine) and returns plain dicts keyed by
column name, so the CLI prints them and tests compare them without a session.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    Float,
    Integer,
    String,
    column,
    func,
    select,
    table,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.expression import TableClause

from app import defaults
from app.states import HealthStatus, RetryState
from app.utctime import UTCDateTime

# --- the columns read, described lightly ------------------------------------------------------
# app.models maps the full schema for the writers; declaring its classes costs a read command
# about a tenth of its start-up. These Core descriptions of the same tables are all a read
# needs; tests/test_cli_queries.py checks them against app.models so the two cannot drift.


_TYPES = {"int": Integer, "str": String, "float": Float, "bool": Boolean, "json": JSON,
          "time": UTCDateTime}  # fmt: skip


class LightTable:
    """A table's columns as attributes (`Process.state`), like the mapped class offers."""

    def __init__(self, name: str, columns: str) -> None:
        pairs = [spec.split(":") for spec in columns.split()]
        self.__table__: TableClause = table(
            name, *(column(col, _TYPES[kind]()) for col, kind in pairs)
        )

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__table__.c[name]
        except KeyError:
            raise AttributeError(name) from None


DaemonRun = LightTable(
    "daemon_runs",
    "id:int started_at:time stopped_at:time stop_reason:str pid:int hostname:str version:str "
    "discovery:str cgroup_version:int cgroup_parent:str config:json",
)
Process = LightTable(
    "processes",
    "id:int boot_id:str pid:int start_ticks:int started_at:time command:str argv:json exe:str "
    "ppid:int uid:int user:str cwd:str rule:str job_id:str state:str state_reason:str "
    "requested_cpu_quota:float requested_cpu_weight:int requested_memory_limit_mb:int "
    "applied_cpu_quota:float applied_cpu_weight:int applied_memory_limit_mb:int "
    "cgroup_version:int cgroup_paths:json discovered_at:time attached_at:time "
    "last_seen_at:time exited_at:time exit_code:int exit_signal:int exit_reason:str "
    "oom_killed:bool peak_memory_bytes:int cpu_seconds:float run_seconds:float",
)
ProcessEvent = LightTable(
    "process_events", "id:int process_id:int occurred_at:time kind:str details:json"
)
RetryItem = LightTable(
    "retry_items",
    "id:int process_id:int operation:str state:str attempt:int max_attempts:int "
    "created_at:time updated_at:time next_attempt_at:time last_attempt_at:time "
    "last_error:str last_error_type:str claimed_until:time final_reason:str",
)
ErrorEvent = LightTable(
    "error_events",
    "id:int occurred_at:time operation:str process_id:int pid:int error_type:str "
    "retryable:bool errno:int errno_name:str exception:str message:str",
)
Scan = LightTable(
    "scans",
    "id:int started_at:time duration_ms:float trigger:str ok:bool seen:int matched:int "
    "new:int unreadable:int errors:int",
)
HealthSnapshot = LightTable(
    "health_snapshots",
    "id:int taken_at:time daemon_run_id:int status:str reasons:json last_scan_at:time "
    "last_successful_scan_at:time consecutive_scan_failures:int "
    "consecutive_attach_failures:int total_scan_failures:int total_attach_failures:int "
    "retry_pending:int dead_letters:int errors_by_type:json details:json",
)
READ_TABLES = (DaemonRun, Process, ProcessEvent, RetryItem, ErrorEvent, Scan, HealthSnapshot)

RETRY_COLUMNS = (
    "id",
    "process_id",
    "pid",
    "command",
    "job_id",
    "state",
    "attempt",
    "max_attempts",
    "next_attempt_at",
    "last_attempt_at",
    "last_error_type",
    "last_error",
    "final_reason",
)
RETRY_DEFAULT_STATES = (RetryState.PENDING, RetryState.DEAD)

PROCESS_COLUMNS = (
    "id",
    "pid",
    "command",
    "job_id",
    "state",
    "discovered_at",
    "attached_at",
    "exited_at",
    "exit_code",
    "exit_signal",
    "state_reason",
)
EVENT_COLUMNS = ("id", "occurred_at", "kind", "details")
ERROR_COLUMNS = (
    "id",
    "occurred_at",
    "operation",
    "error_type",
    "retryable",
    "errno_name",
    "pid",
    "process_id",
    "message",
)
ERROR_STATS_COLUMNS = ("error_type", "operation", "count", "last_at")
SCAN_COLUMNS = (
    "id",
    "started_at",
    "duration_ms",
    "trigger",
    "ok",
    "seen",
    "matched",
    "new",
    "unreadable",
    "errors",
)
HEALTH_HISTORY_COLUMNS = (
    "id",
    "taken_at",
    "status",
    "consecutive_scan_failures",
    "consecutive_attach_failures",
    "retry_pending",
    "dead_letters",
    "reasons",
)

HEALTH_KEYS = (
    "status",
    "reasons",
    "snapshot_id",
    "snapshot_taken_at",
    "snapshot_age_s",
    "snapshot_status",
    "daemon_run_id",
    "daemon_pid",
    "discovery",
    "last_scan_at",
    "last_successful_scan_at",
    "seconds_since_last_successful_scan",
    "consecutive_scan_failures",
    "consecutive_attach_failures",
    "total_scan_failures",
    "total_attach_failures",
    "errors_by_type",
    "retry_pending",
    "dead_letters",
)


class QueryError(Exception):
    """An operator's SQL that SQLite refused; the message is one sentence."""


def _dicts(result: Any) -> list[dict]:
    return [dict(row._mapping) for row in result]


def _retry_select():
    return select(
        RetryItem.id,
        RetryItem.process_id,
        Process.pid,
        Process.command,
        Process.job_id,
        RetryItem.state,
        RetryItem.attempt,
        RetryItem.max_attempts,
        RetryItem.next_attempt_at,
        RetryItem.last_attempt_at,
        RetryItem.last_error_type,
        RetryItem.last_error,
        RetryItem.final_reason,
    ).join(Process.__table__, Process.id == RetryItem.process_id)


# --- retries ----------------------------------------------------------------------------------


def list_retries(conn: Connection, states: Sequence[str] | None = RETRY_DEFAULT_STATES) -> list:
    """Retry items in `states` (all when None): pending first by when they are due, then the
    others by id."""
    query = _retry_select()
    if states is not None:
        query = query.where(RetryItem.state.in_([str(s) for s in states]))
    pending_first = (RetryItem.state != RetryState.PENDING).label("not_pending")
    query = query.order_by(pending_first, RetryItem.next_attempt_at, RetryItem.id)
    return _dicts(conn.execute(query))


def get_retry(conn: Connection, retry_id: int) -> dict | None:
    row = conn.execute(
        _retry_select()
        .add_columns(
            RetryItem.operation,
            RetryItem.created_at,
            RetryItem.updated_at,
            RetryItem.claimed_until,
        )
        .where(RetryItem.id == retry_id)
    ).first()
    return dict(row._mapping) if row else None


def retry_depths(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(RetryItem.state, func.count()).group_by(RetryItem.state))
    return {state: count for state, count in rows}


# --- processes --------------------------------------------------------------------------------


def list_processes(
    conn: Connection,
    *,
    states: Sequence[str] = (),
    since: datetime | None = None,
    command: str | None = None,
    limit: int | None = None,
) -> list[dict]:
    query = select(*(getattr(Process, c) for c in PROCESS_COLUMNS))
    if states:
        query = query.where(Process.state.in_([str(s) for s in states]))
    if since is not None:
        query = query.where(Process.discovered_at >= since)
    if command:
        query = query.where(Process.command == command)
    query = query.order_by(Process.discovered_at.desc(), Process.id.desc()).limit(limit)
    return _dicts(conn.execute(query))


def get_process(conn: Connection, process_id: int) -> dict | None:
    row = conn.execute(select(Process.__table__).where(Process.id == process_id)).first()
    return dict(row._mapping) if row else None


def newest_process_for_pid(conn: Connection, pid: int) -> dict | None:
    """The latest process instance that had this pid (pids are recycled)."""
    row = conn.execute(
        select(Process.__table__)
        .where(Process.pid == pid)
        .order_by(Process.started_at.desc(), Process.id.desc())
        .limit(1)
    ).first()
    return dict(row._mapping) if row else None


def process_events(conn: Connection, process_id: int) -> list[dict]:
    return _dicts(
        conn.execute(
            select(
                ProcessEvent.id, ProcessEvent.occurred_at, ProcessEvent.kind, ProcessEvent.details
            )
            .where(ProcessEvent.process_id == process_id)
            .order_by(ProcessEvent.occurred_at, ProcessEvent.id)
        )
    )


def retry_for_process(conn: Connection, process_id: int) -> dict | None:
    row = conn.execute(_retry_select().where(RetryItem.process_id == process_id)).first()
    return dict(row._mapping) if row else None


# --- errors and scans -------------------------------------------------------------------------


def list_errors(
    conn: Connection,
    *,
    types: Sequence[str] = (),
    operations: Sequence[str] = (),
    since: datetime | None = None,
    pid: int | None = None,
    limit: int | None = None,
) -> list[dict]:
    query = select(*(getattr(ErrorEvent, c) for c in ERROR_COLUMNS))
    if types:
        query = query.where(ErrorEvent.error_type.in_([str(t) for t in types]))
    if operations:
        query = query.where(ErrorEvent.operation.in_(list(operations)))
    if since is not None:
        query = query.where(ErrorEvent.occurred_at >= since)
    if pid is not None:
        query = query.where(ErrorEvent.pid == pid)
    query = query.order_by(ErrorEvent.occurred_at.desc(), ErrorEvent.id.desc()).limit(limit)
    return _dicts(conn.execute(query))


def error_stats(conn: Connection, *, since: datetime | None = None) -> list[dict]:
    """Counts by error type and operation, the most frequent first."""
    count = func.count().label("count")
    query = select(
        ErrorEvent.error_type,
        ErrorEvent.operation,
        count,
        func.max(ErrorEvent.occurred_at).label("last_at"),
    ).group_by(ErrorEvent.error_type, ErrorEvent.operation)
    if since is not None:
        query = query.where(ErrorEvent.occurred_at >= since)
    rows = _dicts(conn.execute(query.order_by(count.desc(), ErrorEvent.error_type)))
    for row in rows:
        # max() over the column loses its type: parse the stored text back into UTC.
        row["last_at"] = _stored_time(row["last_at"])
    return rows


def list_scans(
    conn: Connection, *, since: datetime | None = None, limit: int | None = None
) -> list[dict]:
    query = select(*(getattr(Scan, c) for c in SCAN_COLUMNS))
    if since is not None:
        query = query.where(Scan.started_at >= since)
    query = query.order_by(Scan.started_at.desc(), Scan.id.desc()).limit(limit)
    return _dicts(conn.execute(query))


# --- health -----------------------------------------------------------------------------------


def newest_health(conn: Connection) -> dict | None:
    row = conn.execute(
        select(HealthSnapshot.__table__)
        .order_by(HealthSnapshot.taken_at.desc(), HealthSnapshot.id.desc())
        .limit(1)
    ).first()
    return dict(row._mapping) if row else None


def list_health(
    conn: Connection, *, since: datetime | None = None, limit: int | None = None
) -> list[dict]:
    query = select(*(getattr(HealthSnapshot, c) for c in HEALTH_HISTORY_COLUMNS))
    if since is not None:
        query = query.where(HealthSnapshot.taken_at >= since)
    query = query.order_by(HealthSnapshot.taken_at.desc(), HealthSnapshot.id.desc()).limit(limit)
    return _dicts(conn.execute(query))


def newest_daemon_run(conn: Connection) -> dict | None:
    row = conn.execute(
        select(DaemonRun.id, DaemonRun.started_at, DaemonRun.stopped_at, DaemonRun.stop_reason)
        .order_by(DaemonRun.started_at.desc(), DaemonRun.id.desc())
        .limit(1)
    ).first()
    return dict(row._mapping) if row else None


def daemon_run(conn: Connection, run_id: int) -> dict | None:
    row = conn.execute(
        select(
            DaemonRun.id, DaemonRun.started_at, DaemonRun.stopped_at, DaemonRun.stop_reason
        ).where(DaemonRun.id == run_id)
    ).first()
    return dict(row._mapping) if row else None


# --- free SQL ---------------------------------------------------------------------------------


def run_sql(conn: Connection, statement: str) -> tuple[list[str], list[dict]]:
    """The column names and rows of the operator's own statement, which may only read.

    The engine opened the file read-only (mode=ro); on top of that this connection is made
    query-only and ATTACH is denied, since ATTACH would create a new database file."""
    import sqlite3

    raw = conn.connection.driver_connection
    is_sqlite = isinstance(raw, sqlite3.Connection)
    try:
        if is_sqlite:
            conn.exec_driver_sql("PRAGMA query_only = ON")
            raw.set_authorizer(_deny_attach)
        # exec_driver_sql: the operator's text goes to SQLite as written ('12:30' is no bind).
        result = conn.exec_driver_sql(statement)
        if not result.returns_rows:
            return [], []
        columns = list(result.keys())
        return columns, [dict(zip(columns, row, strict=True)) for row in result]
    except SQLAlchemyError as exc:
        raise QueryError(_sql_message(exc)) from None
    finally:
        if is_sqlite:
            raw.set_authorizer(None)


def _deny_attach(action: int, *_args: Any) -> int:
    import sqlite3

    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _sql_message(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None)
    reason = str(original) if original is not None else str(exc).split("\n")[0]
    if "not authorized" in reason:
        return "the database is opened read-only: ATTACH and DETACH are not allowed"
    if "readonly" in reason or "read-only" in reason:
        return f"the database is opened read-only: {reason}; nothing was changed"
    return f"the SQL failed: {reason}"


def _stored_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


# --- health, aged by the clock ----------------------------------------------------------------


def current_health(
    conn: Connection,
    now: datetime,
    *,
    thresholds: Any = None,
    no_daemon_after: float = defaults.HEALTH_NO_DAEMON_SECONDS,
) -> dict:
    """The newest snapshot's counters judged again at `now`: a daemon that stopped, hangs or
    died turns unhealthy by the passage of time alone. Queue depths are counted live."""
    from app.health import HealthThresholds, assess

    depths = retry_depths(conn)
    snapshot = newest_health(conn)
    run = newest_daemon_run(conn)
    report: dict[str, Any] = dict.fromkeys(HEALTH_KEYS)
    report.update(
        retry_pending=depths.get(RetryState.PENDING, 0),
        dead_letters=depths.get(RetryState.DEAD, 0),
        errors_by_type={},
    )
    if snapshot is None:
        report.update(
            status=HealthStatus.UNHEALTHY.value,
            reasons=["no daemon has recorded its health in this database yet"],
        )
        return report
    details = snapshot["details"] or {}
    if thresholds is None:
        # Judge the snapshot by the thresholds the daemon that wrote it was configured with.
        stored = details.get("thresholds")
        thresholds = HealthThresholds(**stored) if stored else HealthThresholds()
    # A daemon that snapshots less often than every two minutes is not absent between them.
    no_daemon_after = max(no_daemon_after, 2 * float(details.get("snapshot_interval_s") or 0))
    last_success = snapshot["last_successful_scan_at"]
    snapshot_run = (
        daemon_run(conn, snapshot["daemon_run_id"]) if snapshot["daemon_run_id"] else None
    )
    if last_success is not None:
        reference = last_success
    elif snapshot_run is not None:
        reference = snapshot_run["started_at"]
    else:
        reference = snapshot["taken_at"]
    without_success = max(0.0, (now - reference).total_seconds())
    status, reasons = assess(
        thresholds,
        snapshot["consecutive_scan_failures"],
        snapshot["consecutive_attach_failures"],
        without_success,
        ever_scanned_successfully=last_success is not None,
    )
    age = max(0.0, (now - snapshot["taken_at"]).total_seconds())
    absent: list[str] = []
    if run is not None and run["stopped_at"] is not None:
        stopped_for = max(0.0, (now - run["stopped_at"]).total_seconds())
        absent.append(
            f"the daemon stopped {stopped_for:.0f}s ago ({run['stop_reason'] or 'no reason given'})"
        )
    elif age > no_daemon_after:
        absent.append(f"no daemon seen for {age:.0f}s")
    if absent:
        status, reasons = HealthStatus.UNHEALTHY, tuple(absent) + reasons
    report.update(
        status=status.value,
        reasons=list(reasons),
        snapshot_id=snapshot["id"],
        snapshot_taken_at=snapshot["taken_at"],
        snapshot_age_s=round(age, 3),
        snapshot_status=snapshot["status"],
        daemon_run_id=snapshot["daemon_run_id"],
        daemon_pid=details.get("pid"),
        discovery=details.get("discovery"),
        last_scan_at=snapshot["last_scan_at"],
        last_successful_scan_at=last_success,
        seconds_since_last_successful_scan=(
            None if last_success is None else round(without_success, 3)
        ),
        consecutive_scan_failures=snapshot["consecutive_scan_failures"],
        consecutive_attach_failures=snapshot["consecutive_attach_failures"],
        total_scan_failures=snapshot["total_scan_failures"],
        total_attach_failures=snapshot["total_attach_failures"],
        errors_by_type=dict(snapshot["errors_by_type"] or {}),
    )
    return report
