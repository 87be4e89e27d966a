"""One daemon per database: the lock beside the database, held by real processes and taken
away by the kernel when they are SIGKILLed; then two real `ffrtmp watch` on one database."""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from daemon_harness import query, scans_recorded
from ffrtmp_commands import FFRTMP, ffrtmp
from helpers_processes import wait_until

from ffrtmp import daemon_lock
from ffrtmp.daemon_lock import AlreadyRunning, DaemonLock, Holder, lock_path, running_daemon

STARTUP_S = 60  # a Python start-up on a machine whose cores are all busy

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from ffrtmp.daemon_lock import DaemonLock
    DaemonLock.acquire(Path(sys.argv[1]))
    print("locked", flush=True)
    sys.stdin.read()  # holds the lock until its stdin closes, or it is killed
    """
)


def start_holder(spawn, database: Path):
    """A real process holding the lock of `database`, returned once it holds it."""
    holder = spawn(
        [sys.executable, "-c", HOLDER, database],
        wait_exec=False,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=None,
    )
    ready, _, _ = select.select([holder.stdout], [], [], STARTUP_S)
    assert ready and holder.stdout.readline() == b"locked\n", "the holder never took the lock"
    return holder


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def test_a_second_taker_is_refused_with_the_holders_pid_and_start_time(tmp_path, spawn):
    database = tmp_path / "state" / "ffrtmp.db"
    before = datetime.now(UTC).replace(microsecond=0)
    holder = start_holder(spawn, database)
    written = lock_path(database).read_bytes()

    with pytest.raises(AlreadyRunning) as refused:
        DaemonLock.acquire(database)

    started_at = refused.value.holder.started_at
    assert refused.value.holder.pid == holder.pid
    assert before <= parse_iso(started_at) <= datetime.now(UTC)
    assert str(refused.value) == (
        f"ffrtmp watch is already running on {database}: pid {holder.pid}, started at {started_at}"
    )
    assert lock_path(database).read_bytes() == written  # the refused taker wrote nothing
    assert running_daemon(database) == Holder(holder.pid, started_at)


def test_the_kernel_frees_the_lock_of_a_sigkilled_holder(tmp_path, spawn):
    database = tmp_path / "ffrtmp.db"
    holder = start_holder(spawn, database)
    os.kill(holder.pid, signal.SIGKILL)
    assert holder.wait(timeout=STARTUP_S) == -signal.SIGKILL

    assert running_daemon(database) is None
    lock = DaemonLock.acquire(database)  # at once: no stale lock to wait out
    try:
        assert running_daemon(database) == Holder(os.getpid(), lock.holder.started_at)
        assert json.loads(lock_path(database).read_text())["pid"] == os.getpid()
    finally:
        lock.release()
    assert running_daemon(database) is None


def test_a_lock_let_go_of_is_free_for_the_next_daemon(tmp_path):
    database = tmp_path / "ffrtmp.db"
    first = DaemonLock.acquire(database, pid=101)
    first.release()
    first.release()  # twice is harmless
    second = DaemonLock.acquire(database, pid=202)
    try:
        assert running_daemon(database).pid == 202
    finally:
        second.release()


def test_asking_about_a_database_that_never_had_a_daemon_creates_nothing(tmp_path):
    database = tmp_path / "state" / "ffrtmp.db"
    assert running_daemon(database) is None
    assert not database.parent.exists()


def test_asking_holds_nothing_afterwards(tmp_path):
    database = tmp_path / "ffrtmp.db"
    DaemonLock.acquire(database).release()
    assert running_daemon(database) is None
    with open(lock_path(database)) as probe:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if the answer kept a lock


def test_a_probe_met_while_starting_is_waited_out_not_taken_for_a_daemon(tmp_path, monkeypatch):
    """`running_daemon` holds a shared lock for two system calls; a daemon that starts in
    between must try again, not refuse to start."""
    database = tmp_path / "ffrtmp.db"
    DaemonLock.acquire(database).release()
    probe = open(lock_path(database))  # noqa: SIM115 (let go of inside the hook below)
    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
    waited: list[bool] = []

    def probe_finishes() -> None:
        waited.append(True)
        probe.close()

    monkeypatch.setattr(daemon_lock, "_let_a_probe_finish", probe_finishes)
    try:
        lock = DaemonLock.acquire(database)
    finally:
        probe.close()
    lock.release()
    assert waited == [True]


def test_a_lock_file_that_cannot_be_created_is_an_oserror(tmp_path):
    folder = tmp_path / "not-a-folder"
    folder.write_text("")
    with pytest.raises(OSError):
        DaemonLock.acquire(folder / "ffrtmp.db")


def test_the_refusal_names_the_holders_start_time_not_its_own(tmp_path):
    """The start time is the one the holder wrote, whatever the refused one's clock says."""
    database = tmp_path / "ffrtmp.db"
    long_ago = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    lock = DaemonLock.acquire(database, pid=4242, now=long_ago)
    try:
        with pytest.raises(AlreadyRunning, match=r": pid 4242, started at 2026-01-31T12:00:00Z$"):
            DaemonLock.acquire(database, now=long_ago + timedelta(days=1))
    finally:
        lock.release()


# --- real daemons --------------------------------------------------------------------------


def watch_argv(db_path: Path, real_cgroup_parent: str, *extra: str) -> list:
    # Matches nothing on the machine; a scan interval of an hour keeps the daemon from writing
    # anything after its start-up, so a second daemon's writes would show.
    return [
        *FFRTMP,
        "watch",
        "--db",
        db_path,
        "--target",
        "ffrtmp-lock-test-matches-nothing",
        "--discovery",
        "poll",
        "--scan-interval",
        "1h",
        "--cgroup-parent",
        real_cgroup_parent,
        *extra,
    ]


def start_daemon(spawn, db_path: Path, real_cgroup_parent: str, log: Path):
    """A real `ffrtmp watch`, returned once its start-up is written: its run row, its first
    scan, and the health snapshot that follows it. After that it is idle for a minute."""
    with open(log, "w") as stderr:
        daemon = spawn(watch_argv(db_path, real_cgroup_parent), wait_exec=False, stderr=stderr)
    wait_until(
        lambda: scans_recorded(db_path) and startup_snapshot_of(db_path, daemon.pid),
        timeout=STARTUP_S,
        what=f"the start-up of the daemon {daemon.pid}",
    )
    return daemon


def startup_snapshot_of(db_path: Path, pid: int) -> list:
    return query(
        db_path,
        "SELECT h.id FROM health_snapshots h JOIN daemon_runs r ON r.id = h.daemon_run_id "
        "WHERE r.pid = ?",
        (pid,),
    )


def dump(db_path: Path) -> list[str]:
    """Every row of every table, as SQL text."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def stop(daemon) -> None:
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=STARTUP_S) == 0


@pytest.mark.slow
@pytest.mark.parametrize("once", [False, True], ids=["watch", "watch --once"])
def test_a_second_watch_on_the_same_database_exits_2_and_writes_nothing(
    tmp_path, db_path, spawn, real_cgroup_parent, once
):
    first = start_daemon(spawn, db_path, real_cgroup_parent, tmp_path / "first.log")
    before = dump(db_path)
    lock_before = lock_path(db_path).read_bytes()
    started_at = json.loads(lock_before)["started_at"]

    second = subprocess.run(
        watch_argv(db_path, real_cgroup_parent, *(["--once"] if once else [])),
        capture_output=True,
        text=True,
        timeout=STARTUP_S,
    )

    assert second.returncode == 2
    assert second.stderr == (
        f"Error: ffrtmp watch is already running on {db_path}: pid {first.pid}, "
        f"started at {started_at}\n"
    )
    assert dump(db_path) == before
    assert query(db_path, "SELECT pid, stopped_at FROM daemon_runs") == [(first.pid, None)]
    assert lock_path(db_path).read_bytes() == lock_before
    assert first.poll() is None
    stop(first)
    assert query(db_path, "SELECT pid, stop_reason FROM daemon_runs") == [(first.pid, "stopped")]


@pytest.mark.slow
def test_a_daemon_killed_with_sigkill_is_replaced_at_once(
    tmp_path, db_path, spawn, real_cgroup_parent
):
    first = start_daemon(spawn, db_path, real_cgroup_parent, tmp_path / "first.log")
    first.kill()
    assert first.wait(timeout=STARTUP_S) == -signal.SIGKILL

    second = start_daemon(spawn, db_path, real_cgroup_parent, tmp_path / "second.log")

    runs = query(db_path, "SELECT pid, stopped_at FROM daemon_runs ORDER BY id")
    assert runs == [(first.pid, None), (second.pid, None)]
    assert running_daemon(db_path).pid == second.pid
    stop(second)
    assert running_daemon(db_path) is None


@pytest.mark.slow
def test_read_commands_attach_and_run_are_not_blocked_by_a_running_daemon(
    tmp_path, db_path, spawn, real_cgroup_parent
):
    daemon = start_daemon(spawn, db_path, real_cgroup_parent, tmp_path / "daemon.log")
    sleeper = spawn(["sleep", "60"])

    for read in (
        ["health"],
        ["processes", "list"],
        ["scans", "list"],
        ["sql", "SELECT count(*) FROM daemon_runs"],
        ["db", "current"],
    ):
        result = ffrtmp(*read, "--db", db_path)
        assert result.returncode == 0, f"{read}: {result.stderr}"
    attached = ffrtmp(
        "attach",
        "--pid",
        sleeper.pid,
        "--db",
        db_path,
        "--cgroup-parent",
        real_cgroup_parent,
        "--force",  # sleep is no target command
    )
    assert attached.returncode == 0, attached.stderr
    ran = ffrtmp(
        "run", "--db", db_path, "--cgroup-parent", real_cgroup_parent, "--", "sh", "-c", "exit 4"
    )
    assert ran.returncode == 4, ran.stderr

    assert query(db_path, "SELECT pid, state FROM processes WHERE pid = ?", (sleeper.pid,)) == [
        (sleeper.pid, "attached")
    ]
    assert query(
        db_path, "SELECT state, exit_code FROM processes WHERE pid != ?", (sleeper.pid,)
    ) == [("exited", 4)]
    assert query(db_path, "SELECT pid FROM daemon_runs") == [(daemon.pid,)]
    assert running_daemon(db_path).pid == daemon.pid
    stop(daemon)
