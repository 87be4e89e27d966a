"""A store that refuses writes must not stop the daemon from governing (issue 14).

Each fault is made for real: a second sqlite3 connection holding `BEGIN IMMEDIATE` past the
busy timeout, a tmpfs of a few MB filled to the last block, a squatter on the HTTP port. The
daemon is real (in-process and stepped by hand, or a real `ffrtmp watch` process), and so are
its processes and cgroups. Each test asserts that the daemon lives, that the processes sit in
their cgroups, and that nothing is lost: the rows appear once the store takes writes again.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from daemon_harness import close, make_daemon, pump, query, write_config
from helpers_processes import STATE_TIMEOUT_S

from ffrtmp import defaults
from ffrtmp.http import start_http_server
from ffrtmp.states import HealthStatus

STORE_FAILING = "database cannot be written"


def exited_rows(db_path: Path, pid: int) -> list[tuple]:
    return query(
        db_path,
        "SELECT state, exit_signal FROM processes WHERE pid = ? AND exited_at IS NOT NULL",
        (pid,),
    )


def attached_row(db_path: Path, pid: int) -> list[tuple]:
    return query(
        db_path, "SELECT job_id FROM processes WHERE pid = ? AND attached_at IS NOT NULL", (pid,)
    )


def get(url: str) -> tuple[int, bytes, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=STATE_TIMEOUT_S) as response:
            return response.status, response.read(), time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), time.monotonic() - started


@contextlib.contextmanager
def write_lock(db_path: Path):
    """What an operator with `sqlite3` open does: a write transaction held open."""
    holder = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield holder
    finally:
        with contextlib.suppress(sqlite3.Error):
            holder.execute("ROLLBACK")
        holder.close()


def end(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=STATE_TIMEOUT_S)


# --- 1 and 3: a write lock held past the busy timeout -------------------------------------


def test_an_exit_under_a_held_write_lock_is_recorded_once_the_lock_goes(
    tmp_path, db_path, spawn, fake_ffmpeg, job_cgroups
):
    daemon = make_daemon(db_path, write_config(tmp_path, fake_ffmpeg), job_cgroups.parent)
    server = start_http_server("127.0.0.1:0", daemon)
    try:
        daemon.start(time.time())
        first = spawn([fake_ffmpeg, "3600"])
        pump(daemon, lambda: attached_row(db_path, first.pid), what="the first attach")
        with write_lock(db_path):
            locked_at = time.monotonic()
            end(first)
            second = spawn([fake_ffmpeg, "3600"])
            # The daemon lives through the exit and governs the newcomer without the database.
            pump(
                daemon,
                lambda: (
                    not daemon.lifecycle.by_pid.get(first.pid)
                    and job_cgroups.job_of(second.pid) is not None
                ),
                what="the exit handled and the second process governed under the lock",
            )
            assert time.monotonic() - locked_at > defaults.SQLITE_BUSY_TIMEOUT_MS / 1000
            assert exited_rows(db_path, first.pid) == []  # nothing could be written yet
            report = daemon.health.evaluate(time.time())
            assert report.status == HealthStatus.DEGRADED
            assert any(STORE_FAILING in reason for reason in report.reasons)
            assert report.errors_by_type.get("transient", 0) >= 1
            # /healthz and /metrics answer from memory, not after the lock's busy timeout.
            status, body, took = get(f"{server.url}/healthz")
            assert (status, json.loads(body)["status"]) == (200, "warn")
            assert STORE_FAILING in json.loads(body)["output"]
            assert took < defaults.SQLITE_BUSY_TIMEOUT_MS / 1000
            status, _, took = get(f"{server.url}/metrics")
            assert status == 200 and took < defaults.SQLITE_BUSY_TIMEOUT_MS / 1000
            # Past stale_scan_after of refused writes, degraded turns unhealthy.
            later = time.time() + daemon.health.thresholds.stale_scan_after + 1
            assert daemon.health.evaluate(later).status == HealthStatus.UNHEALTHY
        pump(
            daemon,
            lambda: exited_rows(db_path, first.pid) and attached_row(db_path, second.pid),
            what="the kept writes to land once the lock is gone",
        )
        assert exited_rows(db_path, first.pid) == [("exited", signal.SIGTERM)]
        assert attached_row(db_path, second.pid) == [(job_cgroups.job_of(second.pid),)]
        stored = query(db_path, "SELECT error_type FROM error_events WHERE operation = 'store'")
        assert stored == [("transient",)]
        assert daemon.health.evaluate(time.time()).status == HealthStatus.HEALTHY
        assert len(daemon.outbox) == 0
    finally:
        server.close()
        close(daemon)
