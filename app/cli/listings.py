"""The columns of each listing: which a table shows by default, and how the ones with their
own look are shown. Every other key of a row is shown by the unit its name carries
(ffrtmp.cli.table); adding a column to a table here is one line."""

from __future__ import annotations

from datetime import UTC, datetime

from ffrtmp import queries
from ffrtmp.cli import human
from ffrtmp.cli.table import Column, Listing
from ffrtmp.states import ProcessState

# A process in these states has not ended as far as the database knows.
_RUNNING_STATES = {
    ProcessState.DISCOVERED,
    ProcessState.ATTACHED,
    ProcessState.OBSERVED,
    ProcessState.RETRYING,
    ProcessState.DEAD,
}

STATE_COLOURS = {
    "attached": "green",
    "observed": "yellow",
    "retrying": "yellow",
    "dead": "red",
    "pending": "yellow",
    "healthy": "green",
    "degraded": "yellow",
    "unhealthy": "red",
}


def _state_colour(value, _row) -> str | None:
    return STATE_COLOURS.get(value)


def _outcome_colour(value, row) -> str | None:
    if value is None or value == "exit 0":
        return None
    return "red" if row.get("oom_killed") else "yellow"


def runtime(row: dict, now: datetime | None = None) -> float | None:
    """Seconds the process ran (until now while it runs); None when it is not known."""
    if row.get("run_seconds") is not None:
        return row["run_seconds"]
    started = row.get("started_at")
    if started is None:
        return None
    if row.get("exited_at") is not None:
        return max(0.0, (row["exited_at"] - started).total_seconds())
    if row.get("state") in _RUNNING_STATES:
        return max(0.0, ((now or datetime.now(UTC)) - started).total_seconds())
    return None


PROCESSES = Listing(
    raw=queries.PROCESS_COLUMNS,
    default=("id", "pid", "job_id", "state", "discovered_at", "runtime", "result"),
    declared=(
        Column("job_id", shrink=True),
        Column("command", shrink=True),
        Column("state", colour=_state_colour),
        Column("discovered_at", header="DISCOVERED"),
        Column("runtime", value=runtime, show=lambda v, _r: human.duration(v)),
        Column("result", value=human.outcome, show=lambda v, _r: v, colour=_outcome_colour),
        Column("state_reason", header="REASON", shrink=True),
        Column("exit_reason", shrink=True),
        Column("argv", shrink=True),
        Column("cwd", shrink=True),
        Column("exe", shrink=True),
        Column("cgroup_paths", shrink=True),
    ),
)

ERRORS = Listing(
    raw=queries.ERROR_COLUMNS,
    default=("id", "occurred_at", "operation", "error_type", "pid", "message"),
    declared=(
        Column("occurred_at", header="TIME"),
        Column("error_type", header="TYPE"),
        Column("errno_name", header="ERRNO"),
        Column("message", shrink=True),
        Column("exception", shrink=True),
    ),
)

ERROR_STATS = Listing(
    raw=queries.ERROR_STATS_COLUMNS, default=queries.ERROR_STATS_COLUMNS, declared=()
)

RETRIES = Listing(
    raw=queries.RETRY_COLUMNS,
    default=(
        "id",
        "pid",
        "job_id",
        "state",
        "attempt",
        "next_attempt_at",
        "last_error_type",
        "last_error",
    ),
    declared=(
        Column("job_id", shrink=True),
        Column("state", colour=_state_colour),
        Column("attempt", show=lambda v, row: f"{v}/{row.get('max_attempts', '?')}"),
        Column("next_attempt_at", header="NEXT", show=lambda v, _r: human.relative(v)),
        Column("last_attempt_at", show=lambda v, _r: human.relative(v)),
        Column("last_error_type", header="ERROR"),
        Column("last_error", shrink=True),
        Column("final_reason", shrink=True),
    ),
)

SCANS = Listing(
    raw=queries.SCAN_COLUMNS,
    default=queries.SCAN_COLUMNS,
    declared=(
        Column("started_at", header="STARTED"),
        Column("duration_ms", header="TOOK"),
        Column("unreadable", header="UNREAD"),
    ),
)

HEALTH_HISTORY = Listing(
    raw=queries.HEALTH_HISTORY_COLUMNS,
    default=queries.HEALTH_HISTORY_COLUMNS,
    declared=(
        Column("taken_at", header="TAKEN"),
        Column("status", colour=_state_colour),
        Column("consecutive_scan_failures", header="SCAN_FAIL"),
        Column("consecutive_attach_failures", header="ATTACH_FAIL"),
        Column("retry_pending", header="PENDING"),
        Column("dead_letters", header="DEAD"),
        Column("reasons", show=lambda v, _r: "; ".join(map(str, v)), shrink=True),
    ),
)
