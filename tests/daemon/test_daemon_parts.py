"""The daemon in parts: one time model, the followed processes published whole, a programming
error counted rather than passed off as a failure, and what a restart keeps of health.

Real daemons on real SQLite files; the one injected fault (a part that raises ZeroDivisionError)
stands for a bug, which cannot be produced on purpose any other way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest
from daemon_harness import close, make_daemon, query, scans_recorded, write_config
from helpers_processes import STATE_TIMEOUT_S, wait_until

from ffrtmp.clock import Moment
from ffrtmp.health import HealthThresholds, HealthTracker
from ffrtmp.identity import current_identity
from ffrtmp.lifecycle import Followed, Lifecycle
from ffrtmp.outbox import Outbox
from ffrtmp.prune import describe_removed

FFRTMP = [sys.executable, "-m", "ffrtmp.cli"]


def test_a_moment_neither_compares_with_nor_subtracts_from_a_float():
    moment = Moment(100.0, 1_700_000_000.0)
    with pytest.raises(TypeError):
        moment < 101.0  # noqa: B015 (the comparison is what is tested)
    with pytest.raises(TypeError):
        moment - Moment(99.0, 1_700_000_000.0)  # a duration is seconds_since()
    with pytest.raises(TypeError):
        HealthTracker(HealthThresholds(), started_at=1_700_000_000.0)
    later = moment + 5
    assert (later.monotonic, later.wall) == (105.0, 1_700_000_005.0)
    assert later.seconds_since(moment) == 5.0
    # A stored wall time, judged by a moment's own wall reading.
    assert moment.at_wall(1_700_000_030.0) == Moment(130.0, 1_700_000_030.0)


def test_the_outbox_has_no_clock_of_its_own():
    with pytest.raises(TypeError):
        Outbox(clock=lambda: 0.0)


def test_the_followed_processes_are_published_as_an_immutable_tuple(store):
    lifecycle = Lifecycle(store, governor=None)
    ident = current_identity(os.getpid())
    assert lifecycle.followed == ()
    first = Followed(1, ident, "auto-ffmpeg-1", governed=True)
    lifecycle.follow(first)
    published = lifecycle.followed
    assert published == (first,) and isinstance(published, tuple)
    lifecycle.unfollow({1})
    # A reader that took the tuple keeps it whole; the loop publishes a new one.
    assert published == (first,)
    assert lifecycle.followed == ()


def test_a_programming_error_in_a_part_is_counted_and_the_loop_goes_on(
    tmp_path, db_path, real_cgroup_parent, transcoder, caplog
):
    daemon = make_daemon(
        db_path, write_config(tmp_path, transcoder), real_cgroup_parent, events=False
    )
    try:
        now = daemon.clock.now()
        daemon.start(now)

        def broken() -> dict:
            return {"ratio": 1 / 0}  # a bug in what the snapshots add

        daemon.snapshots._details = broken
        daemon.step(now)
        daemon.step(now + 600)  # a scan and a snapshot are due again

        assert daemon.errors.internal == 2
        assert query(db_path, "SELECT count(*) FROM scans")[0][0] == 2, "the scans went on"
        metrics = daemon.metrics.render().decode()
        assert "ffrtmp_internal_errors_total 2.0" in metrics
        traced = [r for r in caplog.records if r.exc_info and r.exc_info[0] is ZeroDivisionError]
        assert len(traced) == 2
    finally:
        close(daemon)


def test_a_bind_problem_before_start_stays_in_health_after_it(
    tmp_path, db_path, real_cgroup_parent
):
    """A squatted port, `watch --once` twice: both runs store a degraded snapshot naming it."""
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    address = f"127.0.0.1:{squatter.getsockname()[1]}"
    try:
        for _ in range(2):
            done = subprocess.run(
                [*FFRTMP, "watch", "--once", "--db", str(db_path), "--http", address]
                + ["--target", "no-such-command-x", "--cgroup-parent", real_cgroup_parent],
                capture_output=True,
                text=True,
                timeout=STATE_TIMEOUT_S,
            )
            assert done.returncode == 0, done.stderr
    finally:
        squatter.close()
    snapshots = query(db_path, "SELECT daemon_run_id, status, reasons FROM health_snapshots")
    runs = {run for run, _, _ in snapshots}
    assert len(runs) == 2
    for run in runs:
        last = [(status, reasons) for r, status, reasons in snapshots if r == run][-1]
        assert last[0] == "degraded", last
        assert f"HTTP endpoint {address} not served" in last[1]


def test_a_clean_stop_says_so_and_records_it(tmp_path, db_path, real_cgroup_parent, spawn):
    watch = spawn(
        [*FFRTMP, "watch", "--db", str(db_path), "--discovery", "poll"]
        + ["--target", "no-such-command-x", "--cgroup-parent", real_cgroup_parent],
        wait_exec=False,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: scans_recorded(db_path), what="the daemon's first scan")
    watch.send_signal(signal.SIGTERM)
    _, stderr = watch.communicate(timeout=STATE_TIMEOUT_S)
    assert watch.returncode == 0, stderr
    assert query(db_path, "SELECT stop_reason FROM daemon_runs") == [("stopped",)]
    lines = stderr.splitlines()
    assert "stopped (stopped); 0 followed processes keep running" in lines[-1]
    assert f"database {db_path} created at " in stderr
    assert sum("effective configuration" in line for line in lines) == 1


def test_what_a_prune_removed_reads_as_words():
    removed = {"retry_items": 0, "processes": 3, "process_events": 12, "scans": 0}
    assert describe_removed(removed) == "3 processes, 12 process_events"
    assert describe_removed({"scans": 0}) == "nothing"
