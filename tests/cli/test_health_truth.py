"""`ffrtmp health` tells the truth about real `ffrtmp watch` processes: a one-off `--once` run
never speaks for the daemon, a SIGKILLed daemon is "no daemon" at once (its lock is gone), and
what it shows as current is current even when the daemon snapshots only every 5 minutes."""

from __future__ import annotations

import json
import os
import signal
from datetime import datetime
from pathlib import Path

import pytest
from daemon_harness import query, write_config
from ffrtmp_commands import FFRTMP, ffrtmp
from helpers_processes import STATE_TIMEOUT_S, wait_until


def health(db_path: Path) -> tuple[int, dict]:
    done = ffrtmp("health", "--json", "--db", db_path)
    assert done.returncode in (0, 1, 2), done.stderr
    return done.returncode, json.loads(done.stdout)


def watch_argv(db_path: Path, config: Path, cgroup_parent: str, *extra) -> list:
    return [
        *FFRTMP,
        "watch",
        "--db",
        db_path,
        "--watch-config",
        config,
        "--cgroup-parent",
        cgroup_parent,
        "--discovery",
        "poll",
        *extra,
    ]


def start_daemon(spawn, db_path, config, cgroup_parent, log: Path, env=None):
    """A real daemon, once its start-up health snapshot is written."""
    with open(log, "w") as stderr:
        daemon = spawn(
            watch_argv(db_path, config, cgroup_parent), wait_exec=False, stderr=stderr, env=env
        )

    def started() -> bool:
        if not db_path.exists():
            return False
        try:
            return bool(
                query(
                    db_path,
                    "SELECT h.id FROM health_snapshots h JOIN daemon_runs r "
                    "ON r.id = h.daemon_run_id WHERE r.pid = ?",
                    (daemon.pid,),
                )
            )
        except Exception:
            return False

    wait_until(started, what=f"the start-up of daemon {daemon.pid}")
    return daemon


def stop(daemon) -> None:
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=STATE_TIMEOUT_S) == 0


@pytest.fixture
def config(tmp_path, transcoder):
    return write_config(tmp_path, transcoder, "scan_interval: 1s\n")


@pytest.mark.slow
def test_a_one_off_run_never_speaks_for_the_daemon(
    tmp_path, db_path, spawn, real_cgroup_parent, config
):
    # A one-off run on a database no daemon ever ran on: there is no daemon, and it says so.
    once = ffrtmp(*watch_argv(db_path, config, real_cgroup_parent, "--once")[3:])
    assert once.returncode == 0, once.stderr
    code, report = health(db_path)
    assert code == 2
    assert report["daemon_running"] is False
    assert report["reasons"][0] == "no daemon is running on this database (nothing holds its lock)"
    assert report["snapshot_id"] is None  # the one-off run's snapshot is not the daemon's
    assert report["last_one_off_run"].startswith("pid ")

    # The daemon runs: healthy, judged on its own run, whatever one-off runs did before.
    daemon = start_daemon(spawn, db_path, config, real_cgroup_parent, tmp_path / "d.log")
    code, report = health(db_path)
    assert (code, report["status"], report["daemon_running"]) == (0, "healthy", True)
    run_id = query(db_path, "SELECT id FROM daemon_runs WHERE pid = ?", (daemon.pid,))[0][0]
    assert report["daemon_run_id"] == run_id
    assert report["status_since"] is not None

    # The daemon stops, then a one-off run: it is the daemon's stop that is reported.
    stop(daemon)
    once = ffrtmp(*watch_argv(db_path, config, real_cgroup_parent, "--once")[3:])
    assert once.returncode == 0, once.stderr
    code, report = health(db_path)
    assert code == 2
    assert report["daemon_run_id"] == run_id
    assert report["reasons"][1].startswith("the daemon stopped ")
    assert report["reasons"][1].endswith("(stopped)")
    assert not any("once" in reason for reason in report["reasons"])
    runs = query(db_path, "SELECT once FROM daemon_runs ORDER BY id")
    assert runs == [(1,), (0,), (1,)]


@pytest.mark.slow
def test_a_sigkilled_daemon_is_no_daemon_at_once(
    tmp_path, db_path, spawn, real_cgroup_parent, config
):
    daemon = start_daemon(spawn, db_path, config, real_cgroup_parent, tmp_path / "d.log")
    assert health(db_path)[0] == 0
    daemon.kill()
    assert daemon.wait(timeout=STATE_TIMEOUT_S) == -signal.SIGKILL

    code, report = health(db_path)

    assert code == 2
    assert report["status"] == "unhealthy"
    assert report["daemon_running"] is False
    assert report["reasons"][0] == "no daemon is running on this database (nothing holds its lock)"
    assert report["reasons"][1].startswith(f"the last daemon (pid {daemon.pid}) ended without")
    # Its run was never closed: only the lock could tell.
    assert query(db_path, "SELECT stopped_at FROM daemon_runs WHERE pid = ?", (daemon.pid,)) == [
        (None,)
    ]


@pytest.mark.slow
def test_what_health_shows_as_current_is_current(
    tmp_path, db_path, spawn, real_cgroup_parent, transcoder
):
    """Snapshots every 5 minutes; every attach fails (a failpoint makes the kernel's write to
    cgroup.procs fail, as an unwritable cgroup would); scans run every second. The counts and
    times `ffrtmp health` shows match the database's rows, not a minutes-old snapshot."""
    config = write_config(
        tmp_path,
        transcoder,
        "scan_interval: 1s\nretry: {enabled: false}\n"
        "health: {snapshot_interval: 5m, degraded_attach_failures: 2}\n",
    )
    env = {**os.environ, "FFRTMP_FAILPOINTS": "governor.attach=EACCES*inf"}
    daemon = start_daemon(spawn, db_path, config, real_cgroup_parent, tmp_path / "d.log", env)
    try:
        for expected in (1, 2, 3):
            spawn([transcoder, "600"])
            wait_until(
                lambda n=expected: attach_failures(db_path) == n,
                what=f"{expected} attach failures",
            )
            code, report = health(db_path)
            assert report["consecutive_attach_failures"] == expected
            assert code == (1 if expected >= 2 else 0)
        assert "3 consecutive attach failures (threshold 2)" in report["reasons"]
        assert report["status"] == "degraded"

        # Scans go on after the last snapshot; health reads their times live.
        taken = newest_snapshot_taken(db_path)
        wait_until(lambda: scans_after(db_path, taken) >= 2, what="two scans after the snapshot")
        code, report = health(db_path)
        last_scan = datetime.fromisoformat(report["last_scan_at"])
        assert last_scan > datetime.fromisoformat(report["snapshot_taken_at"])
        assert report["consecutive_scan_failures"] == 0
    finally:
        stop(daemon)
    lines = (tmp_path / "d.log").read_text()
    assert "health: healthy -> degraded (2 consecutive attach failures (threshold 2))" in lines
    assert f"ready: discovery poll, database {db_path}, config {config}, cgroup v" in lines
    assert "recovery: 0 adopted, 0 attached again, 0 followed without limits, 0 closed" in lines
    assert query(db_path, "SELECT count(*) FROM daemon_runs WHERE once = 0") == [(1,)]


def attach_failures(db_path: Path) -> int:
    return query(db_path, "SELECT count(*) FROM process_events WHERE kind = 'attach_failed'")[0][0]


def newest_snapshot_taken(db_path: Path) -> str:
    return query(db_path, "SELECT max(taken_at) FROM health_snapshots")[0][0]


def scans_after(db_path: Path, taken: str) -> int:
    return query(db_path, "SELECT count(*) FROM scans WHERE started_at > ?", (taken,))[0][0]
