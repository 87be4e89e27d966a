"""One daemon per database: an advisory lock on `<database>.lock`, beside the database file.

`ffrtmp watch` (a `--once` run too) holds an exclusive flock(2) on that file for its whole life
and writes its pid and start time into it, so a second one can name it when it refuses to
start. The lock is flock's, not fcntl's: it belongs to the open file description, so

- the kernel drops it when the holder dies, SIGKILL included: a restart is never blocked by a
  stale lock, and the file itself is never removed (removing a lock file races with the next
  holder);
- closing some other descriptor of the file in the same process cannot drop it, as it would a
  POSIX lock (SQLite's own locks on the database file are POSIX locks: that is why the lock is
  on a file of its own).

`running_daemon()` answers "is a daemon running on this database, and which" for anyone, at
once and without blocking: it tries a *shared* lock and lets go of it at once. A starting
daemon that meets only shared holders knows they are such probes, and tries again instead of
refusing (see `DaemonLock.acquire`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

LOCK_SUFFIX = ".lock"
_MAX_CONTENT_BYTES = 4096


def lock_path(database_file: Path) -> Path:
    """The lock file of a database file: the same name with `.lock` added, in the same folder."""
    return database_file.with_name(database_file.name + LOCK_SUFFIX)


@dataclass(frozen=True)
class Holder:
    """The daemon holding a database's lock, as it wrote itself into the lock file; None for
    what it has not written yet (it writes right after it got the lock)."""

    pid: int | None
    started_at: str | None  # ISO 8601 UTC, e.g. 2026-05-01T10:00:00Z

    def describe(self) -> str:
        if self.pid is None:
            return "its pid is not written yet"
        return f"pid {self.pid}, started at {self.started_at or 'an unknown time'}"


class AlreadyRunning(Exception):
    """Another daemon holds the database's lock; the message is one sentence naming it."""

    def __init__(self, database: object, holder: Holder) -> None:
        super().__init__(f"ffrtmp watch is already running on {database}: {holder.describe()}")
        self.holder = holder


class DaemonLock:
    """The exclusive lock of one database, held until release() or the end of the process."""

    def __init__(self, path: Path, fd: int, holder: Holder) -> None:
        self.path = path
        self.holder = holder
        self._fd: int | None = fd

    @classmethod
    def acquire(
        cls, database_file: Path, *, pid: int | None = None, now: datetime | None = None
    ) -> DaemonLock:
        """Take the lock of `database_file` and write `pid` and `now` into it.

        Raises AlreadyRunning when a daemon holds it: then nothing is written, and no file or
        folder is created that was not there (the lock file stays as the holder wrote it).
        Raises OSError when the lock file cannot be created or opened.
        """
        path = lock_path(database_file)
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Never inherited (O_CLOEXEC): a child that outlived the daemon would keep the lock.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            while not _try_lock(fd, fcntl.LOCK_EX):
                if not _try_lock(fd, fcntl.LOCK_SH):
                    raise AlreadyRunning(database_file, _read_holder(fd))
                # Only shared holders: probes of running_daemon(), which let go within two
                # system calls. A daemon's exclusive lock would have refused our shared one.
                fcntl.flock(fd, fcntl.LOCK_UN)
                _let_a_probe_finish()
            holder = Holder(os.getpid() if pid is None else pid, _iso(now or datetime.now(UTC)))
            content = json.dumps({"pid": holder.pid, "started_at": holder.started_at}) + "\n"
            os.ftruncate(fd, 0)
            os.pwrite(fd, content.encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, holder)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Let go (closing the descriptor drops the lock); safe to call more than once."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def running_daemon(database_file: Path) -> Holder | None:
    """The daemon that holds the lock of `database_file` now, or None when none does.

    Never blocks, creates nothing and holds nothing afterwards. Raises OSError when the lock
    file exists but cannot be opened (e.g. PermissionError for another user's database)."""
    try:
        fd = os.open(lock_path(database_file), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None  # no daemon ever started on this database
    try:
        if _try_lock(fd, fcntl.LOCK_SH):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return _read_holder(fd)
    finally:
        os.close(fd)


def _try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def _let_a_probe_finish() -> None:
    os.sched_yield()


def _read_holder(fd: int) -> Holder:
    try:
        data = json.loads(os.pread(fd, _MAX_CONTENT_BYTES, 0))
        pid = data["pid"]
        started_at = data.get("started_at")
    except (OSError, ValueError, TypeError, KeyError):
        return Holder(None, None)  # locked, but not written yet (or written by no ffrtmp)
    if not isinstance(pid, int) or isinstance(pid, bool):
        return Holder(None, None)
    return Holder(pid, started_at if isinstance(started_at, str) else None)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
