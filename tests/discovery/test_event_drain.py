"""A backlog of kernel events in a real daemon loop: each event is handled at its own time, and
a backlog gives way to whatever else is due. Real processes, the real connector, an in-process
daemon stepped by hand.

Found in a burst of 500 processes on a busy machine: one step read the queue empty for ten
seconds, so every process of the burst was recorded as discovered, attached and exited at the
moment that step began, and no scan, retry, snapshot or watchdog ping came in between.
"""

from __future__ import annotations

import subprocess
from datetime import datetime

import pytest
from daemon_harness import query, write_config

from ffrtmp import defaults

BACKLOG_PROCESSES = 150  # an exec and an exit each: several batches of events
assert 2 * BACKLOG_PROCESSES > 2 * defaults.PROC_EVENTS_PER_BATCH

pytestmark = pytest.mark.usefixtures("proc_connector")


def queue_a_backlog() -> None:
    """Events of short processes the rules do not match, queued while the daemon is not
    reading: each exec costs the daemon a look into /proc, like any process on a busy host."""
    for _ in range(BACKLOG_PROCESSES):
        subprocess.run(["true"], check=True)


def discovered_at(db_path, pid: int) -> datetime | None:
    rows = query(db_path, "SELECT discovered_at FROM processes WHERE pid = ?", (pid,))
    return datetime.fromisoformat(rows[0][0]) if rows else None


@pytest.fixture
def idle_daemon(tmp_path, db_path, real_cgroup_parent, transcoder, daemons):
    """A started daemon that has done its start-up scan and prune, with nothing else due for
    a minute."""
    daemon = daemons(
        db_path, write_config(tmp_path, transcoder), real_cgroup_parent, scan_interval="60s"
    )
    now = daemon.clock.now()
    daemon.start(now)
    daemon.full_scan(now, trigger="startup")
    daemon.prune_slice(now)
    daemon.health_tick(now)
    yield daemon


def test_each_event_of_a_backlog_is_handled_at_its_own_time(
    idle_daemon, db_path, spawn, transcoder
):
    first = spawn([transcoder, "30"])
    queue_a_backlog()
    last = spawn([transcoder, "31"])
    step_began = idle_daemon.clock.now()

    idle_daemon.step(step_began)

    assert idle_daemon.wait_seconds(step_began) > 1, "nothing else was due: one drain read all"
    earlier, later = discovered_at(db_path, first.pid), discovered_at(db_path, last.pid)
    assert earlier is not None and later is not None
    # Hundreds of events and an attach were handled between the two.
    assert later > earlier


def test_a_backlog_gives_way_to_work_that_is_due(idle_daemon, db_path, spawn, transcoder):
    queue_a_backlog()
    behind_the_backlog = spawn([transcoder, "30"])
    now = idle_daemon.clock.now()
    idle_daemon.next_prune_at = now  # due now: the step may handle one batch before it

    idle_daemon.step(now)

    assert idle_daemon.next_prune_at > now, "the prune that was due did not run"
    assert discovered_at(db_path, behind_the_backlog.pid) is None, "the whole backlog was read"

    idle_daemon.step(idle_daemon.clock.now())  # nothing is due any more: the rest of the backlog

    assert query(
        db_path, "SELECT state FROM processes WHERE pid = ?", (behind_the_backlog.pid,)
    ) == [("attached",)]


def test_a_stop_request_ends_a_backlog_after_the_batch_in_hand(
    idle_daemon, db_path, spawn, transcoder
):
    queue_a_backlog()
    behind_the_backlog = spawn([transcoder, "30"])
    idle_daemon.stop_requested = 1  # what SIGTERM's handler does

    idle_daemon.step(idle_daemon.clock.now())

    assert discovered_at(db_path, behind_the_backlog.pid) is None, "the whole backlog was read"
