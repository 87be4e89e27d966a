"""`ffrtmp events --follow`: a real daemon writes while a real follower prints, then Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading

import pytest
from daemon_harness import query, start_watch, write_config
from helpers_processes import STATE_TIMEOUT_S, wait_until

from ffrtmp import queries
from ffrtmp.database import open_readonly


def _lines(stream) -> queue.Queue:
    """The lines a follower prints, as they come, gathered by a thread."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _events_of(printed: list[dict], pid: int) -> list[str]:
    return [e["kind"] for e in printed if e["source"] == "process" and e["pid"] == pid]


@pytest.mark.slow
def test_follow_prints_what_a_running_daemon_writes_and_stops_on_ctrl_c(
    tmp_path, db_path, spawn, transcoder, cgroup_hierarchy, real_cgroup_parent
):
    config = write_config(tmp_path, transcoder, extra="scan_interval: 1s\n")
    daemon = start_watch(spawn, db_path, config, real_cgroup_parent, "--discovery", "events")
    first = spawn([transcoder, "600"])
    wait_until(
        lambda: (
            query(db_path, "SELECT state FROM processes WHERE pid = ?", (first.pid,))
            == [("attached",)]
        ),
        what="the first job attached",
    )
    follower = spawn(
        [sys.executable, "-m", "ffrtmp.cli", "events", "--follow", "--json", "--limit", "1"]
        + ["--db", str(db_path)],
        wait_exec=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = _lines(follower.stdout)
    printed = [json.loads(lines.get(timeout=STATE_TIMEOUT_S))]  # the backlog: it is following
    assert printed[0]["pid"] == first.pid

    second = spawn([transcoder, "600"])
    wait_until(
        lambda: (
            query(db_path, "SELECT state FROM processes WHERE pid = ?", (second.pid,))
            == [("attached",)]
        ),
        what="the second job attached",
    )
    second.kill()
    second.wait(timeout=STATE_TIMEOUT_S)

    process_id = query(db_path, "SELECT id FROM processes WHERE pid = ?", (second.pid,))[0][0]
    engine = open_readonly(db_path)

    def stored() -> list[str]:
        with engine.connect() as conn:
            return [e["kind"] for e in queries.events_of_process(conn, process_id)]

    def printed_all_stored() -> bool:
        while not lines.empty():
            printed.append(json.loads(lines.get()))
        kinds = _events_of(printed, second.pid)
        return "exited" in kinds and kinds == stored()

    # Every event the daemon wrote about the second job, once each, in the order written.
    wait_until(printed_all_stored, what="the follower printing every event of the second job")
    engine.dispose()
    assert _events_of(printed, second.pid)[:2] == ["discovered", "limits_applied"]
    exited = next(e for e in printed if e.get("kind") == "exited" and e["pid"] == second.pid)
    assert exited["details"]["exit_signal"] == signal.SIGKILL

    follower.send_signal(signal.SIGINT)
    assert follower.wait(timeout=STATE_TIMEOUT_S) == 0
    assert follower.stderr.read() == ""  # no traceback, no KeyboardInterrupt
    assert daemon.poll() is None  # the daemon went on writing and governing throughout


def test_events_without_follow_prints_the_newest_oldest_first(store, db_path):
    from datetime import UTC, datetime

    from test_cli_queries import register

    now = datetime.now(UTC)
    ids = [register(store, 51000 + i, age_s=100 - i) for i in range(3)]
    store.record_exit(ids[0], now=now, exit_code=3, exit_signal=None, reason=None)
    done = subprocess.run(
        [sys.executable, "-m", "ffrtmp.cli", "events", "--limit", "2", "--db", str(db_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": ""},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    assert " discovered pid 51002 auto-ffmpeg-51002 (process 3)" in lines[0]
    assert " exited pid 51000 auto-ffmpeg-51000 (process 1)" in lines[1]
    assert '"exit_code": 3' in lines[1]  # the newest two, printed oldest first
