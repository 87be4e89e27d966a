"""Builds an in-process daemon for tests and drives its loop step by step.

The scanner is built with self_pid=None: the processes a test spawns are its children, and a
real daemon skips its own children. The rules match only the test's own copy of the
executable (an `exe` criterion), so processes of anything else on the machine are never
touched.
"""

from __future__ import annotations

import os
import select
import sqlite3
import sys
import time
from pathlib import Path

from helpers_processes import STATE_TIMEOUT_S, TEST_TARGET, wait_until

from ffrtmp.cgroups import create_governor
from ffrtmp.config import apply_overrides, load_config
from ffrtmp.daemon import Daemon
from ffrtmp.database import open_for_writing
from ffrtmp.scanner import Scanner
from ffrtmp.store import Store


def write_config(
    directory: Path,
    exe: Path | str,
    extra: str = "",
    command: str = TEST_TARGET,
    cmdline_regex: str | None = None,
) -> Path:
    """A watch config whose one rule matches `command` run from `exe` (and, for a shared
    executable such as python, a command line holding `cmdline_regex`)."""
    criteria = f"exe: '{exe}'" + (f", cmdline_regex: '{cmdline_regex}'" if cmdline_regex else "")
    path = directory / "watch.yaml"
    path.write_text(
        f"target_commands: [{command}]\n"
        f"commands:\n  {command}:\n    match: {{{criteria}}}\n" + extra
    )
    return path


def make_daemon(
    db_path: Path,
    config_path: Path,
    cgroup_parent: str | None,
    *,
    events: bool = True,
    governor=None,
    clock=None,
    listener=None,
    **overrides,
) -> Daemon:
    config = apply_overrides(load_config(config_path), cgroup_parent=cgroup_parent, **overrides)
    store = Store(open_for_writing(db_path))
    if governor is None:
        governor = create_governor(parent=cgroup_parent)
    if listener is None and events:
        from ffrtmp.proc_events import ProcEventListener

        listener = ProcEventListener().open()
    scanner = Scanner(config.rules(), self_pid=None)
    return Daemon(
        config,
        store,
        governor,
        scanner,
        listener=listener,
        discovery="events" if listener is not None else "poll",
        clock=clock,
    )


def pump(daemon: Daemon, until, timeout: float = STATE_TIMEOUT_S, what: str = "") -> None:
    """Run loop steps at real time, read from the daemon's own clock as its loop does, until
    `until()` is true."""
    deadline = time.monotonic() + timeout
    while True:
        if daemon.listener is not None:
            select.select([daemon.listener.fileno()], [], [], 0.05)
        else:
            time.sleep(0.05)
        daemon.step(daemon.clock.now())
        if until():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or until}")


def query(db_path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    con = sqlite3.connect(db_path)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def scans_recorded(db_path: Path) -> int:
    """How many scans a daemon has written; 0 while its database is still being created."""
    if not db_path.exists():
        return 0
    try:
        return query(db_path, "SELECT count(*) FROM scans")[0][0]
    except sqlite3.OperationalError:
        return 0


def start_watch(spawn, db_path: Path, config: Path, cgroup_parent: str, *flags: str):
    """A real `ffrtmp watch` process on `db_path`, once it has made its first scan."""
    daemon = spawn(
        [sys.executable, "-m", "ffrtmp.cli", "watch", "--db", str(db_path)]
        + ["--watch-config", str(config), "--cgroup-parent", cgroup_parent, *flags],
        wait_exec=False,
    )
    wait_until(lambda: scans_recorded(db_path), what="the daemon's first scan")
    return daemon


def close(daemon: Daemon) -> None:
    daemon.release()
    daemon.store.close()


def cgroup_of(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for c in controllers.split(","):
                out[c] = path
    return out


def is_zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


__all__ = [
    "make_daemon",
    "pump",
    "query",
    "close",
    "cgroup_of",
    "write_config",
    "scans_recorded",
    "os",
]
