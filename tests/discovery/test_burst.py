"""A burst of 500 matching processes against a running `ffrtmp watch --discovery events`: each
one is recorded once, under its own start time; the ones that live are attached and their exits
recorded with the status the kernel reported; the ones killed the moment they are found, while
their attach may still be under way, are closed and never retried. Real processes, real cgroups,
a real daemon.

No process here has a fixed lifetime. On a machine whose cores are busy the daemon attaches a
hundred or so processes a second, in the order of their exec events: a process that ends before
the daemon reaches its exec event is gone when the daemon looks, and rightly never recorded. So
every process lives until the database shows it recorded, and the test then ends it.
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cgroup_hierarchy import JobCgroups
from daemon_harness import query, scans_recorded, write_config
from ffrtmp_commands import FFRTMP
from helpers_processes import wait_until

from ffrtmp.identity import current_identity

BURST = 500
SHORT_EVERY = 3  # every third process is killed as soon as it is recorded
SCAN_INTERVAL = "1s"
# For a machine whose cores are all busy: a few seconds of work there, under one unloaded.
BURST_S = 180


def stored_time(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def in_list(pids) -> str:
    return "(" + ",".join(str(pid) for pid in pids) + ")"


def states_of(db_path: Path, pids) -> dict[int, str]:
    return dict(query(db_path, f"SELECT pid, state FROM processes WHERE pid IN {in_list(pids)}"))


@pytest.mark.slow
def test_a_burst_is_attached_once_each_and_short_lived_ones_are_never_retried(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder
):
    config = write_config(tmp_path, transcoder)
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
    wait_until(lambda: scans_recorded(db_path), timeout=BURST_S, what="the daemon's first scan")

    short, long = {}, {}
    start_ticks = {}
    for i in range(BURST):
        child = spawn([transcoder, "3600"], wait_exec=False)
        (short if i % SHORT_EVERY == 0 else long)[child.pid] = child
        start_ticks[child.pid] = current_identity(child.pid).start_ticks  # before any reaping

    # The short-lived: killed the moment their row appears, which races their attach.
    unkilled = set(short)

    def kill_the_recorded() -> bool:
        for pid in states_of(db_path, unkilled).keys() & unkilled:
            short[pid].kill()
            unkilled.discard(pid)
        return not unkilled

    wait_until(kill_the_recorded, timeout=BURST_S, what="every short-lived process recorded")
    wait_until(
        lambda: list(states_of(db_path, long).values()).count("attached") == len(long),
        timeout=BURST_S,
        what="every long-lived process attached",
    )
    terminated_at = datetime.now(UTC)
    for child in long.values():
        child.terminate()
    # Reaped at once: the exit statuses the daemon records can only come from the kernel's
    # exit events, not from a zombie it looks at later.
    for child in [*short.values(), *long.values()]:
        child.wait(timeout=BURST_S)
    wait_until(
        lambda: (
            set(states_of(db_path, long).values()) == {"exited"}
            and set(states_of(db_path, short).values()) <= {"vanished", "exited"}
        ),
        timeout=BURST_S,
        what="every exit recorded",
    )
    # Every job cgroup is removed once its process has gone.
    wait_until(lambda: job_cgroups.names() == [], timeout=BURST_S, what="job cgroups removed")
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=BURST_S) == 0

    # One row for each process, under its own start time: no process twice, none missing,
    # nothing else.
    assert query(db_path, "SELECT pid, start_ticks FROM processes ORDER BY pid") == sorted(
        start_ticks.items()
    )
    rows = query(
        db_path,
        "SELECT pid, state, attached_at IS NOT NULL, exited_at IS NOT NULL, "
        "exit_code, exit_signal, exit_reason FROM processes",
    )
    by_pid = {row[0]: row[1:] for row in rows}

    # Attached, then ended by SIGTERM, as the kernel's exit event said, and when it said it:
    # a daemon that stamped a whole backlog with the time its step began would say before.
    for pid in long:
        assert by_pid[pid] == ("exited", 1, 1, None, signal.SIGTERM, None), f"long-lived {pid}"
    exits = query(db_path, f"SELECT pid, exited_at FROM processes WHERE pid IN {in_list(long)}")
    too_early = {pid: at for pid, at in exits if stored_time(at) < terminated_at}
    assert not too_early, f"exits recorded before the SIGTERM at {terminated_at}: {too_early}"

    # Killed the moment they were recorded: closed with the kernel's SIGKILL, whether their
    # attach got there first or not.
    for pid in short:
        state, _attached, exited, code, killed_by, reason = by_pid[pid]
        assert state in ("vanished", "exited"), f"short-lived pid {pid} is {state}"
        assert exited, f"short-lived pid {pid} has no exit time"
        assert (code, killed_by, reason) == (None, signal.SIGKILL, None), f"short-lived {pid}"

    # Never retried: a retry for a process that is gone would be one.
    assert query(db_path, "SELECT count(*) FROM retry_items") == [(0,)]
