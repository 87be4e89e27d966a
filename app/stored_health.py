"""The health `ffrtmp health` reports: whether a daemon runs, and its health judged again now.

Whether a daemon runs is the kernel's answer, not a snapshot's: a daemon holds an flock on
`<database>.lock` for as long as it lives (ffrtmp.daemon_lock), so no holder means no daemon at
once, SIGKILL included. A `watch --once` run holds it too while it runs, but never speaks for the
daemon: only snapshots of daemon runs are judged. What changes with every scan (the last scan,
the last successful one, the consecutive scan failures) is read live from the scans table; the
consecutive attach failures come from the newest snapshot, which the daemon writes whenever a
consecutive counter changes, so it is current too; the totals are as of that snapshot, whose
age is reported.

The same rules as the daemon's own (ffrtmp.health) then judge at the reader's `now`, so a daemon
that hangs turns unhealthy by the passage of time alone.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from ffrtmp import defaults, queries
from ffrtmp.health import SEVERITY, HealthThresholds, assess
from ffrtmp.states import HealthStatus, RetryState

HEALTH_KEYS = (
    "status",
    "reasons",
    "status_since",
    "daemon_running",
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
    "last_successful_attach_at",
    "consecutive_scan_failures",
    "consecutive_attach_failures",
    "total_scan_failures",
    "total_attach_failures",
    "errors_by_type",
    "retry_pending",
    "dead_letters",
    "last_one_off_run",
)

# `holder` when the lock was not consulted (a database that is no file): judged by time alone.
NOT_CONSULTED = object()


def current_health(
    conn: Connection,
    now: datetime,
    *,
    holder: Any = NOT_CONSULTED,
    thresholds: Any = None,
    no_daemon_after: float = defaults.HEALTH_NO_DAEMON_SECONDS,
) -> dict:
    """The daemon's health at `now`. `holder` is what ffrtmp.daemon_lock.running_daemon()
    said of the database (a Holder, or None for no daemon); left out, the lock is not
    consulted and a daemon not seen for `no_daemon_after` seconds counts as gone."""
    depths = queries.retry_depths(conn)
    report: dict[str, Any] = dict.fromkeys(HEALTH_KEYS)
    report.update(
        retry_pending=depths.get(RetryState.PENDING, 0),
        dead_letters=depths.get(RetryState.DEAD, 0),
        errors_by_type={},
        last_one_off_run=_one_off(conn, now),
    )
    lock_known = holder is not NOT_CONSULTED
    holder_run = None
    if lock_known and holder is not None and holder.pid is not None:
        holder_run = queries.newest_daemon_run(conn, once=None, pid=holder.pid)
    absent: list[str] = []
    if lock_known and holder is None:
        absent.append("no daemon is running on this database (nothing holds its lock)")
    elif holder_run is not None and holder_run["once"]:
        absent.append(
            f"no daemon is running (pid {holder.pid}, which holds the database, is a one-off"
            " `watch --once`)"
        )
    elif lock_known and holder_run is None:
        absent.append(f"a daemon is starting ({holder.describe()})")
    report["daemon_running"] = (not absent) if lock_known else None
    if holder_run is not None and not holder_run["once"]:
        snapshot = queries.newest_health(conn, run_id=holder_run["id"])
    else:
        snapshot = queries.newest_health(conn)
    last_run = queries.newest_daemon_run(conn)
    if snapshot is None:
        if lock_known and holder_run is not None and not holder_run["once"]:
            started = _seconds(now - holder_run["started_at"])
            absent.append(
                f"the daemon (pid {holder.pid}) started {started} ago and has not recorded its"
                " health yet"
            )
        elif not absent or last_run is None:
            absent.append("no daemon has recorded its health in this database yet")
        report.update(status=HealthStatus.UNHEALTHY.value, reasons=absent)
        return report

    details = snapshot["details"] or {}
    if thresholds is None:
        # Judge the snapshot by the thresholds the daemon that wrote it was configured with.
        stored = details.get("thresholds")
        thresholds = HealthThresholds(**stored) if stored else HealthThresholds()
    run = queries.daemon_run(conn, snapshot["daemon_run_id"]) if snapshot["daemon_run_id"] else None
    counters = {
        "last_scan_at": snapshot["last_scan_at"],
        "last_successful_scan_at": snapshot["last_successful_scan_at"],
        "consecutive_scan_failures": snapshot["consecutive_scan_failures"],
    }
    if run is not None and _runs_now(run, holder_run, lock_known, conn):
        # Its scans, and only its: a later run (a one-off one too) would have its own.
        live = queries.scans_since(conn, run["started_at"])
        if live["last_scan_at"] is not None:
            counters = live
    last_success = counters["last_successful_scan_at"]
    if last_success is not None:
        reference = last_success
    elif run is not None:
        reference = run["started_at"]
    else:
        reference = snapshot["taken_at"]
    without_success = max(0.0, (now - reference).total_seconds())
    status, reasons = assess(
        thresholds,
        counters["consecutive_scan_failures"],
        snapshot["consecutive_attach_failures"],
        without_success,
        ever_scanned_successfully=last_success is not None,
    )
    age = max(0.0, (now - snapshot["taken_at"]).total_seconds())
    # A daemon that snapshots less often than every two minutes is not absent between them.
    no_daemon_after = max(no_daemon_after, 2 * float(details.get("snapshot_interval_s") or 0))
    if not lock_known:
        if last_run is not None and last_run["stopped_at"] is not None:
            absent.append(_stopped(last_run, now))
        elif age > no_daemon_after:
            absent.append(f"no daemon seen for {age:.0f}s")
    elif absent and last_run is not None:
        absent.append(
            _stopped(last_run, now)
            if last_run["stopped_at"] is not None
            else f"the last daemon (pid {last_run['pid']}) ended without recording its stop"
            f" (killed?); its last snapshot is {age:.0f}s old"
        )
    elif not absent and age > no_daemon_after:
        absent.append(
            f"the daemon (pid {holder.pid}) runs but has not recorded its health for {age:.0f}s"
            " (hung?)"
        )
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
        status_since=_status_since(status, snapshot, run, absent, reference, thresholds),
        snapshot_id=snapshot["id"],
        snapshot_taken_at=snapshot["taken_at"],
        snapshot_age_s=round(age, 3),
        snapshot_status=snapshot["status"],
        daemon_run_id=snapshot["daemon_run_id"],
        daemon_pid=details.get("pid"),
        discovery=details.get("discovery"),
        last_scan_at=counters["last_scan_at"],
        last_successful_scan_at=last_success,
        seconds_since_last_successful_scan=(
            None if last_success is None else round(without_success, 3)
        ),
        last_successful_attach_at=snapshot["last_successful_attach_at"],
        consecutive_scan_failures=counters["consecutive_scan_failures"],
        consecutive_attach_failures=snapshot["consecutive_attach_failures"],
        total_scan_failures=snapshot["total_scan_failures"],
        total_attach_failures=snapshot["total_attach_failures"],
        errors_by_type=dict(snapshot["errors_by_type"] or {}),
    )
    return report


def _status_since(
    status: HealthStatus,
    snapshot: dict,
    run: dict | None,
    absent: list[str],
    reference: datetime,
    thresholds: HealthThresholds,
) -> datetime | None:
    """Since when the status the reader gives holds: the daemon's own when it agrees, else
    the moment the reader's rule began to apply (as well as the database can tell)."""
    if absent:
        if run is not None and run["stopped_at"] is not None:
            return run["stopped_at"]
        return snapshot["taken_at"]  # the last moment the daemon was seen
    if status.value == snapshot["status"]:
        return snapshot["status_since"]
    stale_from = reference + timedelta(seconds=thresholds.stale_scan_after)
    return stale_from if status == HealthStatus.UNHEALTHY else snapshot["taken_at"]


def _runs_now(run: dict, holder_run: dict | None, lock_known: bool, conn: Connection) -> bool:
    """Whether `run` is the daemon running now (as the lock says, or else as the newest run
    of any kind that recorded no stop)."""
    if lock_known:
        return holder_run is not None and holder_run["id"] == run["id"]
    newest = queries.newest_daemon_run(conn, once=None)
    return newest is not None and newest["id"] == run["id"] and run["stopped_at"] is None


def _stopped(run: dict, now: datetime) -> str:
    reason = run["stop_reason"] or "no reason given"
    return f"the daemon stopped {_seconds(now - run['stopped_at'])} ago ({reason})"


def _one_off(conn: Connection, now: datetime) -> str | None:
    """One line on the newest `watch --once` run: it is no daemon, but an operator who just
    ran one wants to see it."""
    run = queries.newest_daemon_run(conn, once=True)
    if run is None:
        return None
    if run["stopped_at"] is None:
        return f"pid {run['pid']}, started {_seconds(now - run['started_at'])} ago"
    return f"pid {run['pid']}, ended {_seconds(now - run['stopped_at'])} ago"


def _seconds(delta: timedelta) -> str:
    return f"{max(0.0, delta.total_seconds()):.0f}s"
