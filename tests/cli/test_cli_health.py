"""`ffrtmp health`: the newest snapshot judged again by the clock, exit codes 0/1/2, and the
history, on real SQLite files written with Store.record_health.

Where a test needs "a daemon runs", the test process itself plays it: it records a daemon run
with its own pid and holds the database's real daemon lock (ffrtmp.daemon_lock), as a daemon
does. tests/cli/test_health_truth.py does the same with real `ffrtmp watch` processes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from ffrtmp_commands import invoke

from ffrtmp import defaults
from ffrtmp.daemon_lock import DaemonLock
from ffrtmp.queries import HEALTH_HISTORY_COLUMNS
from ffrtmp.stored_health import HEALTH_KEYS


@pytest.fixture
def daemon_run(store, db_path):
    """A daemon run of this process, started 10 minutes ago, holding the database's lock."""
    import os

    run_id = store.begin_run(
        now=datetime.now(UTC) - timedelta(minutes=10),
        pid=os.getpid(),
        hostname="edge",
        version="0.1.0",
        discovery="events",
        cgroup_version=2,
        cgroup_parent=None,
        config={},
    )
    lock = DaemonLock.acquire(db_path)
    try:
        yield run_id
    finally:
        lock.release()


def snapshot(
    store,
    *,
    age_s: float = 0,
    scan_age_s: float = 0,
    status: str = "healthy",
    run_id: int | None = None,
    **counters,
) -> None:
    """A snapshot taken `age_s` ago whose last successful scan was `scan_age_s` before it."""
    taken = datetime.now(UTC) - timedelta(seconds=age_s)
    values = {
        "last_scan_at": taken - timedelta(seconds=scan_age_s),
        "last_successful_scan_at": taken - timedelta(seconds=scan_age_s),
        **counters,
    }
    store.record_health(
        now=taken,
        run_id=run_id,
        status=status,
        reasons=[],
        counters=values,
        errors_by_type={"transient": 3, "resource": 1},
        details={"discovery": "events", "pid": 4242},
    )


def test_fresh_healthy_snapshot_exits_0(store, db_path, daemon_run):
    snapshot(store, run_id=daemon_run, age_s=5, scan_age_s=3)
    result = invoke(db_path, "health")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "status: healthy"
    assert re.fullmatch(
        r"last snapshot: .+ \(\d+(\.\d)?s ago\), said healthy; totals are as of it", lines[1]
    )
    assert lines[2] == f"daemon: run {daemon_run}, pid 4242, discovery events"
    assert lines[3].startswith("last scan: ")
    assert lines[4].startswith("last successful scan: ")
    assert lines[5] == "last successful attach: never"
    assert lines[6:] == [
        "scan failures: 0 consecutive, 0 total",
        "attach failures: 0 consecutive, 0 total",
        "retry queue: 0 pending, 0 dead letters",
        "errors by type: resource 1, transient 3",
    ]


def test_attach_failures_make_it_degraded_exit_1(store, db_path, daemon_run):
    snapshot(store, run_id=daemon_run, consecutive_attach_failures=10, total_attach_failures=12)
    result = invoke(db_path, "health")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[:2] == [
        "status: degraded",
        "  - 10 consecutive attach failures (threshold 10)",
    ]
    assert "attach failures: 10 consecutive, 12 total" in result.stdout


def test_scan_failures_make_it_unhealthy_exit_2(store, db_path, daemon_run):
    snapshot(store, run_id=daemon_run, consecutive_scan_failures=5, total_scan_failures=5)
    result = invoke(db_path, "health")
    assert result.exit_code == 2
    assert result.stdout.splitlines()[:2] == [
        "status: unhealthy",
        "  - 5 consecutive scan failures (threshold 5)",
    ]


def test_an_old_snapshot_is_unhealthy_by_time_alone(store, db_path, daemon_run):
    """It said healthy; ten minutes of silence from the daemon make it unhealthy."""
    snapshot(store, run_id=daemon_run, age_s=600, scan_age_s=1, status="healthy")
    result = invoke(db_path, "health", "--json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert (report["status"], report["snapshot_status"]) == ("unhealthy", "healthy")
    assert re.fullmatch(
        r"the daemon \(pid \d+\) runs but has not recorded its health for 60\ds \(hung\?\)",
        report["reasons"][0],
    )
    assert report["reasons"][1].startswith("last successful scan 60")


def test_stale_scans_in_a_fresh_snapshot_are_aged_to_now(store, db_path, daemon_run):
    """A daemon that still writes snapshots but has not scanned for too long (stuck scanner)."""
    gap = defaults.HEALTH_STALE_SCAN_SECONDS + 30
    snapshot(store, run_id=daemon_run, age_s=1, scan_age_s=gap, status="healthy")
    result = invoke(db_path, "health")
    assert result.exit_code == 2
    assert re.match(
        r"status: unhealthy\n  - last successful scan 15\d(\.\d)?s ago \(threshold 120s\)\n",
        result.stdout,
    )


def test_a_stopped_daemon_is_unhealthy(store, db_path):
    now = datetime.now(UTC)
    run_id = store.begin_run(
        now=now - timedelta(minutes=5),
        pid=4242,
        hostname="edge",
        version="0.1.0",
        discovery="poll",
        cgroup_version=2,
        cgroup_parent=None,
        config={},
    )
    snapshot(store, age_s=2, run_id=run_id)
    store.end_run(run_id, now=now, reason="sigterm")
    result = invoke(db_path, "health")
    assert result.exit_code == 2
    assert re.match(
        r"status: unhealthy\n  - no daemon is running on this database \(nothing holds its lock\)"
        r"\n  - the daemon stopped \d(\.\d)?s ago \(sigterm\)\n",
        result.stdout,
    )


def test_json_has_the_documented_keys_and_live_queue_depths(store, db_path, daemon_run):
    snapshot(store, run_id=daemon_run, age_s=3)
    result = invoke(db_path, "health", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert list(report) == list(HEALTH_KEYS)
    assert report["errors_by_type"] == {"transient": 3, "resource": 1}
    assert report["discovery"] == "events"
    assert (report["retry_pending"], report["dead_letters"]) == (0, 0)
    assert 3 <= report["snapshot_age_s"] < 60


def test_no_snapshot_yet_is_exit_2(store, db_path):
    result = invoke(db_path, "health")
    assert result.exit_code == 2
    assert result.stdout.splitlines()[:3] == [
        "status: unhealthy",
        "  - no daemon is running on this database (nothing holds its lock)",
        "  - no daemon has recorded its health in this database yet",
    ]


def test_missing_database_is_one_sentence_exit_2_and_not_created(tmp_path):
    missing = tmp_path / "nowhere" / "ffrtmp.db"
    result = invoke(missing, "health")
    assert result.exit_code == 2
    assert result.output == (
        f"Error: database {missing} does not exist yet "
        "(start `ffrtmp watch` or run `ffrtmp db upgrade` to create it)\n"
    )
    assert not missing.parent.exists()


def test_history_lists_snapshots_newest_first_with_since_and_limit(store, db_path, daemon_run):
    for age in (7200, 1800, 600, 60):
        snapshot(store, run_id=daemon_run, age_s=age)
    rows = json.loads(invoke(db_path, "health", "--history", "--json").stdout)
    assert [list(r) for r in rows] == [list(HEALTH_HISTORY_COLUMNS)] * 4
    assert [r["id"] for r in rows] == [4, 3, 2, 1]
    recent = json.loads(invoke(db_path, "health", "--history", "--since", "1h", "--json").stdout)
    assert [r["id"] for r in recent] == [4, 3, 2]
    limited = invoke(db_path, "health", "--history", "--limit", "2", "--csv")
    assert limited.exit_code == 0
    lines = limited.stdout.splitlines()
    assert lines[0] == ",".join(HEALTH_HISTORY_COLUMNS)
    assert [line.split(",")[0] for line in lines[1:]] == ["4", "3"]


@pytest.mark.parametrize("since", ["5x", "tomorrow", "-1h"])
def test_history_bad_since(store, db_path, since):
    result = invoke(db_path, "health", "--history", "--since", since)
    assert result.exit_code == 2
    assert (
        f"Error: Invalid value for '--since': {since!r} is neither a duration (90s, 15m, 2h, "
        "7d), today, yesterday nor an ISO time (2026-01-31T12:00 or 2026-01-31T12:00:00Z)"
    ) in result.output
