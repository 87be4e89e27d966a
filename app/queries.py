"""Every read the operator's commands make, as SQLAlchemy Core `select()` over the schema.

Each function takes a Connection (from the read-only engine) and returns plain dicts keyed by
column name, so the CLI prints them and tests compare them without a session.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Select, Table, func, select

from ffrtmp.read_tables import (
    daemon_runs,
    error_events,
    health_snapshots,
    process_events,
    processes,
    retry_items,
    scans,
)
from ffrtmp.states import RetryState

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
    "closed_reason",
)
RETRY_DEFAULT_STATES = (RetryState.PENDING, RetryState.DEAD)

# Every column of the row: JSON and CSV carry them all (OOM, usage, limits, argv ...).
PROCESS_COLUMNS = tuple(c.name for c in processes.columns)
ERROR_COLUMNS = (
    "id",
    "occurred_at",
    "operation",
    "error_type",
    "retryable",
    "errno_name",
    "pid",
    "process_id",
    "errno",
    "exception",
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
DAEMON_RUN_COLUMNS = ("id", "started_at", "stopped_at", "stop_reason", "pid", "once")


def _all(conn: Connection, query: Select) -> list[dict]:
    return [dict(row._mapping) for row in conn.execute(query)]


def _first(conn: Connection, query: Select) -> dict | None:
    row = conn.execute(query).first()
    return dict(row._mapping) if row else None


def _newest_first(
    query: Select, table: Table, time: str, *, since: datetime | None = None, limit: int | None
) -> Select:
    """`query` over `table` from `since` on, the newest first by the `time` column (then id,
    for rows of the same moment), at most `limit` rows."""
    column = table.c[time]
    if since is not None:
        query = query.where(column >= since)
    return query.order_by(column.desc(), table.c.id.desc()).limit(limit)


def _columns(table: Table, names: Sequence[str]) -> Select:
    return select(*(table.c[name] for name in names))


def _retry_select() -> Select:
    return select(
        retry_items.c.id,
        retry_items.c.process_id,
        processes.c.pid,
        processes.c.command,
        processes.c.job_id,
        retry_items.c.state,
        retry_items.c.attempt,
        retry_items.c.max_attempts,
        retry_items.c.next_attempt_at,
        retry_items.c.last_attempt_at,
        retry_items.c.last_error_type,
        retry_items.c.last_error,
        retry_items.c.final_reason,
        retry_items.c.closed_reason,
    ).join(processes, processes.c.id == retry_items.c.process_id)


# --- retries ----------------------------------------------------------------------------------


def list_retries(
    conn: Connection,
    states: Sequence[str] | None = RETRY_DEFAULT_STATES,
    *,
    closed: bool = False,
) -> list:
    """Retry items in `states` (all when None): pending first by when they are due, then the
    others by id. Closed dead letters (their process ended) only with `closed`."""
    query = _retry_select()
    if not closed:
        query = query.where(retry_items.c.closed_at.is_(None))
    if states is not None:
        query = query.where(retry_items.c.state.in_([str(s) for s in states]))
    pending_first = (retry_items.c.state != RetryState.PENDING).label("not_pending")
    query = query.order_by(pending_first, retry_items.c.next_attempt_at, retry_items.c.id)
    return _all(conn, query)


def get_retry(conn: Connection, retry_id: int) -> dict | None:
    details = (
        retry_items.c.operation,
        retry_items.c.created_at,
        retry_items.c.updated_at,
        retry_items.c.claimed_until,
    )
    return _first(conn, _retry_select().add_columns(*details).where(retry_items.c.id == retry_id))


def retry_depths(conn: Connection) -> dict[str, int]:
    """How many retry items are in each state; 'dead' counts the actionable dead letters only
    (a closed one, whose process ended, is history)."""
    query = (
        select(retry_items.c.state, func.count())
        .where(retry_items.c.closed_at.is_(None))
        .group_by(retry_items.c.state)
    )
    return {state: count for state, count in conn.execute(query)}


# --- processes --------------------------------------------------------------------------------


def list_processes(
    conn: Connection,
    *,
    states: Sequence[str] = (),
    since: datetime | None = None,
    command: str | None = None,
    oom: bool = False,
    exit_code: int | None = None,
    exit_signal: int | None = None,
    limit: int | None = None,
) -> list[dict]:
    query = _columns(processes, PROCESS_COLUMNS)
    if states:
        query = query.where(processes.c.state.in_([str(s) for s in states]))
    if command:
        query = query.where(processes.c.command == command)
    if oom:
        query = query.where(processes.c.oom_killed.is_(True))
    if exit_code is not None:
        query = query.where(processes.c.exit_code == exit_code)
    if exit_signal is not None:
        query = query.where(processes.c.exit_signal == exit_signal)
    return _all(conn, _newest_first(query, processes, "discovered_at", since=since, limit=limit))


def get_process(conn: Connection, process_id: int) -> dict | None:
    return _first(conn, select(processes).where(processes.c.id == process_id))


def newest_process_for_pid(conn: Connection, pid: int) -> dict | None:
    """The latest process instance that had this pid (pids are recycled)."""
    query = select(processes).where(processes.c.pid == pid)
    return _first(conn, _newest_first(query, processes, "started_at", limit=1))


def newest_process_for_job(conn: Connection, job_id: str) -> dict | None:
    """The latest process instance recorded under this job id. A generated job id ends in the
    pid and start ticks (`auto-ffmpeg-1234-987654`): the pid index finds it. Any other (a
    `run` or `attach` name) walks the discovery-time index from the newest row."""
    query = select(processes).where(processes.c.job_id == job_id)
    parts = job_id.rsplit("-", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        hinted = query.where(processes.c.pid == int(parts[1]))
        found = _first(conn, _newest_first(hinted, processes, "discovered_at", limit=1))
        if found is not None:
            return found
    return _first(conn, _newest_first(query, processes, "discovered_at", limit=1))


def events_of_process(conn: Connection, process_id: int) -> list[dict]:
    """The event trail of one process, oldest first."""
    query = (
        _columns(process_events, ("id", "occurred_at", "kind", "details"))
        .where(process_events.c.process_id == process_id)
        .order_by(process_events.c.occurred_at, process_events.c.id)
    )
    return _all(conn, query)


def retry_for_process(conn: Connection, process_id: int) -> dict | None:
    return _first(conn, _retry_select().where(retry_items.c.process_id == process_id))


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
    query = _columns(error_events, ERROR_COLUMNS)
    if types:
        query = query.where(error_events.c.error_type.in_([str(t) for t in types]))
    if operations:
        query = query.where(error_events.c.operation.in_(list(operations)))
    if pid is not None:
        query = query.where(error_events.c.pid == pid)
    return _all(conn, _newest_first(query, error_events, "occurred_at", since=since, limit=limit))


def error_stats(conn: Connection, *, since: datetime | None = None) -> list[dict]:
    """Counts by error type and operation, the most frequent first."""
    count = func.count().label("count")
    query = select(
        error_events.c.error_type,
        error_events.c.operation,
        count,
        func.max(error_events.c.occurred_at).label("last_at"),
    ).group_by(error_events.c.error_type, error_events.c.operation)
    if since is not None:
        query = query.where(error_events.c.occurred_at >= since)
    rows = _all(conn, query.order_by(count.desc(), error_events.c.error_type))
    for row in rows:
        # max() over the column loses its type: parse the stored text back into UTC.
        row["last_at"] = _stored_time(row["last_at"])
    return rows


def list_scans(
    conn: Connection, *, since: datetime | None = None, limit: int | None = None
) -> list[dict]:
    query = _columns(scans, SCAN_COLUMNS)
    return _all(conn, _newest_first(query, scans, "started_at", since=since, limit=limit))


# --- health -----------------------------------------------------------------------------------


def newest_health(conn: Connection, *, run_id: int | None = None) -> dict | None:
    """The newest snapshot of a daemon that was not a `--once` run (of run `run_id` if
    given); snapshots without a run count as the daemon's."""
    query = select(health_snapshots).outerjoin(
        daemon_runs, daemon_runs.c.id == health_snapshots.c.daemon_run_id
    )
    if run_id is not None:
        query = query.where(health_snapshots.c.daemon_run_id == run_id)
    else:
        query = query.where(daemon_runs.c.once.is_not(True))
    return _first(conn, _newest_first(query, health_snapshots, "taken_at", limit=1))


def scans_since(conn: Connection, started_at: datetime) -> dict:
    """What the scans table says now of the scans from `started_at` on (one daemon run): the
    last scan's time, the last successful one's, and the failures since it."""
    in_run = scans.c.started_at >= started_at
    last_ok = conn.execute(
        select(scans.c.id, scans.c.started_at)
        .where(in_run, scans.c.ok.is_(True))
        .order_by(scans.c.id.desc())
        .limit(1)
    ).first()
    failed = select(func.count()).where(in_run, scans.c.ok.is_(False))
    if last_ok is not None:
        failed = failed.where(scans.c.id > last_ok.id)
    last = conn.execute(
        select(scans.c.started_at).where(in_run).order_by(scans.c.id.desc()).limit(1)
    ).scalar()
    return {
        "last_scan_at": last,
        "last_successful_scan_at": None if last_ok is None else last_ok.started_at,
        "consecutive_scan_failures": conn.execute(failed).scalar() or 0,
    }


def list_health(
    conn: Connection, *, since: datetime | None = None, limit: int | None = None
) -> list[dict]:
    query = _columns(health_snapshots, HEALTH_HISTORY_COLUMNS)
    return _all(conn, _newest_first(query, health_snapshots, "taken_at", since=since, limit=limit))


def newest_daemon_run(
    conn: Connection, *, once: bool | None = False, pid: int | None = None
) -> dict | None:
    """The newest run of `ffrtmp watch`: a daemon's (once=False), a `--once` run's
    (once=True) or either (None); with `pid`, the newest one of that pid still running."""
    query = _columns(daemon_runs, DAEMON_RUN_COLUMNS)
    if once is not None:
        query = query.where(daemon_runs.c.once.is_(once))
    if pid is not None:
        query = query.where(daemon_runs.c.pid == pid, daemon_runs.c.stopped_at.is_(None))
    return _first(conn, _newest_first(query, daemon_runs, "started_at", limit=1))


def daemon_run(conn: Connection, run_id: int) -> dict | None:
    query = _columns(daemon_runs, DAEMON_RUN_COLUMNS).where(daemon_runs.c.id == run_id)
    return _first(conn, query)


def _stored_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


# The states of a process that runs with a row that says so (`ffrtmp top`).
RUNNING_STATES = ("attached", "detached", "observed", "retrying", "dead", "discovered")


def running_processes(conn: Connection) -> list[dict]:
    """The processes whose end is not recorded (they may have ended since: the caller checks
    each against /proc), with what `ffrtmp top` shows of them."""
    query = _columns(
        processes,
        (
            "id",
            "boot_id",
            "pid",
            "start_ticks",
            "started_at",
            "command",
            "rule",
            "job_id",
            "state",
            "applied_cpu_quota",
            "applied_memory_limit_mb",
            "cgroup_version",
            "cgroup_paths",
        ),
    ).where(processes.c.exited_at.is_(None), processes.c.state.in_(RUNNING_STATES))
    return _all(conn, query.order_by(processes.c.id))


# --- the event stream (`ffrtmp events`) -------------------------------------------------------

EVENT_ERROR_COLUMNS = ("id", "occurred_at", "process_id", "pid", "operation", "error_type")
EVENT_ERROR_COLUMNS += ("errno_name", "message")


def _process_event_select() -> Select:
    """Process events with the pid and job id of their process, as `source: process`."""
    return select(
        process_events.c.id,
        process_events.c.occurred_at,
        process_events.c.process_id,
        processes.c.pid,
        processes.c.job_id,
        process_events.c.kind,
        process_events.c.details,
    ).join(processes, processes.c.id == process_events.c.process_id)


def _tagged(rows: list[dict], source: str) -> list[dict]:
    return [{"source": source, **row} for row in rows]


def event_cursor(conn: Connection) -> tuple[int, int]:
    """The newest ids of process_events and error_events (0 for an empty table): the point
    from which a follower reads what is written next."""
    newest = [
        conn.execute(select(func.max(table.c.id))).scalar() or 0
        for table in (process_events, error_events)
    ]
    return newest[0], newest[1]


def recent_events(
    conn: Connection, cursor: tuple[int, int], *, since: datetime | None, limit: int
) -> list[dict]:
    """The `limit` newest process events and errors up to `cursor`, oldest first."""
    process_query = _process_event_select().where(process_events.c.id <= cursor[0])
    error_query = _columns(error_events, EVENT_ERROR_COLUMNS).where(error_events.c.id <= cursor[1])
    rows = _tagged(
        _all(
            conn,
            _newest_first(process_query, process_events, "occurred_at", since=since, limit=limit),
        ),
        "process",
    ) + _tagged(
        _all(
            conn, _newest_first(error_query, error_events, "occurred_at", since=since, limit=limit)
        ),
        "error",
    )
    rows.sort(key=lambda r: (r["occurred_at"], r["source"], r["id"]))
    return rows[-limit:]


def events_after(conn: Connection, cursor: tuple[int, int], *, limit: int) -> list[dict]:
    """Process events and errors written after `cursor` (by id, so a row written late with an
    early time is not missed), at most `limit` of each, in the order they were written."""
    process_query = (
        _process_event_select()
        .where(process_events.c.id > cursor[0])
        .order_by(process_events.c.id)
        .limit(limit)
    )
    error_query = (
        _columns(error_events, EVENT_ERROR_COLUMNS)
        .where(error_events.c.id > cursor[1])
        .order_by(error_events.c.id)
        .limit(limit)
    )
    rows = _tagged(_all(conn, process_query), "process") + _tagged(_all(conn, error_query), "error")
    rows.sort(key=lambda r: (r["occurred_at"], r["source"], r["id"]))
    return rows


def advance(cursor: tuple[int, int], rows: Sequence[dict]) -> tuple[int, int]:
    """`cursor` moved past `rows`."""
    process_id, error_id = cursor
    for row in rows:
        if row["source"] == "process":
            process_id = max(process_id, row["id"])
        else:
            error_id = max(error_id, row["id"])
    return process_id, error_id
