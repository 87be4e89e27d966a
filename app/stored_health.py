"""The health `ffrtmp health` reports: the newest stored snapshot judged again by the clock.

The daemon judges itself with ffrtmp.health as it runs; a reader of the database applies the same
rules to the snapshot's counters at its own `now`, so a daemon that stopped, hangs or died turns
unhealthy by the passage of time alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from ffrtmp import defaults, queries
from ffrtmp.health import SEVERITY, HealthThresholds, assess
from ffrtmp.states import HealthStatus, RetryState

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


def current_health(
    conn: Connection,
    now: datetime,
    *,
    thresholds: Any = None,
    no_daemon_after: float = defaults.HEALTH_NO_DAEMON_SECONDS,
) -> dict:
    """The newest snapshot's counters judged again at `now`: a daemon that stopped, hangs or
    died turns unhealthy by the passage of time alone. Queue depths are counted live."""
    depths = queries.retry_depths(conn)
    snapshot = queries.newest_health(conn)
    run = queries.newest_daemon_run(conn)
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
        queries.daemon_run(conn, snapshot["daemon_run_id"]) if snapshot["daemon_run_id"] else None
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
    elif SEVERITY.get(snapshot["status"], 0) > SEVERITY[status]:
        # What the counters cannot show (a database that refused writes, an HTTP address not
        # bound) the daemon said itself: its word stands while it is present.
        status = HealthStatus(snapshot["status"])
        said = [r for r in (snapshot["reasons"] or []) if isinstance(r, str) and r not in reasons]
        reasons = tuple(reasons) + tuple(said)
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
