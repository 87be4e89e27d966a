"""A burst of 500 matching processes against a running `ffrtmp watch --discovery events`:
each one is recorded at most once, the ones that live are attached and their exits recorded,
the ones that die at once are never retried. Real processes, real cgroups, a real daemon."""

from __future__ import annotations

import signal
import sys
import time

import pytest
from cgroup_hierarchy import JobCgroups
from daemon_harness import query, scans_recorded, write_config
from helpers_processes import STATE_TIMEOUT_S, wait_until

FFRTMP = [sys.executable, "-m", "ffrtmp.cli"]
BURST = 500
SHORT_EVERY = 3  # every third process exits after 50 ms, the rest after 3 s
SCAN_INTERVAL = "1s"


def in_list(pids: list[int]) -> str:
    return "(" + ",".join(str(pid) for pid in pids) + ")"


@pytest.mark.slow
def test_a_burst_is_attached_once_each_and_short_lived_ones_are_never_retried(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, fake_ffmpeg
):
    started = time.monotonic()
    config = write_config(tmp_path, fake_ffmpeg)
    with open(tmp_path / "daemon.log", "w") as log:
        daemon = spawn(
            [
                *FFRTMP,
                "watch",
                "--discovery",
                "events",
                "--scan-interval",
                SCAN_INTERVAL,
                "--db",
                db_path,
                "--watch-config",
                config,
                "--cgroup-parent",
                job_cgroups.parent,
            ],
            wait_exec=False,
            stderr=log,
        )
    wait_until(lambda: scans_recorded(db_path), timeout=30, what="the daemon's first scan")

    short, long = [], []
    for i in range(BURST):
        is_short = i % SHORT_EVERY == 0
        child = spawn([fake_ffmpeg, "0.05" if is_short else "3"], wait_exec=False)
        (short if is_short else long).append(child)
    burst_seconds = time.monotonic() - started
    for child in short + long:
        child.wait(timeout=30)
    long_pids = [c.pid for c in long]
    short_pids = [c.pid for c in short]
    wait_until(
        lambda: (
            query(
                db_path,
                f"SELECT count(*) FROM processes WHERE pid IN {in_list(long_pids)}"
                " AND state = 'exited'",
            )[0][0]
            == len(long)
        ),
        timeout=30,
        what="every long-lived process's exit recorded",
    )
    # Every job cgroup is removed once its process has gone.
    wait_until(
        lambda: job_cgroups.names() == [], timeout=STATE_TIMEOUT_S, what="job cgroups removed"
    )
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=20) == 0

    rows = query(
        db_path,
        "SELECT pid, state, attached_at IS NOT NULL, exited_at IS NOT NULL, "
        "exit_code, exit_signal, exit_reason FROM processes",
    )
    by_pid = {row[0]: row[1:] for row in rows}
    assert set(by_pid) <= set(long_pids) | set(short_pids)
    # The unique constraint makes the first query empty by construction; the second would show
    # one process recorded twice under two start times.
    twice = query(
        db_path,
        "SELECT boot_id, pid, start_ticks, count(*) FROM processes "
        "GROUP BY boot_id, pid, start_ticks HAVING count(*) > 1",
    )
    assert twice == []
    assert query(db_path, "SELECT pid FROM processes GROUP BY pid HAVING count(*) > 1") == []
    assert len(rows) == len(by_pid)

    # Lived 3 s, past one scan interval: one row each, attached, exit code 0 from the kernel.
    for pid in long_pids:
        assert by_pid.get(pid) == ("exited", 1, 1, 0, None, None), f"long-lived pid {pid}"

    # Lived 50 ms: absent, vanished before the attach, or attached and exited: never retried.
    short_rows = {pid: by_pid[pid] for pid in short_pids if pid in by_pid}
    for pid, (state, _attached, exited, *_exit) in short_rows.items():
        assert state in ("vanished", "exited"), f"short-lived pid {pid} is {state}"
        assert exited, f"short-lived pid {pid} has no exit time"
    assert (
        query(
            db_path,
            "SELECT p.pid, r.state FROM retry_items r JOIN processes p ON p.id = r.process_id",
        )
        == []
    )
    took = time.monotonic() - started
    assert took < 60, f"the burst took {took:.0f} s (spawning alone {burst_seconds:.1f} s)"
