"""A process is (boot id, pid, start time): a recycled pid is a different process.

The start time is field 22 of /proc/<pid>/stat, in clock ticks since boot. It is exact, so it
is compared as an integer; `started_at` turns it into wall-clock time for people, worked out
afresh each time from the boot-time clock so that a step of the wall clock never skews it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from ffrtmp.clock import seconds_since_boot

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@lru_cache(maxsize=1)
def boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    boot_id: str
    pid: int
    start_ticks: int

    def __post_init__(self) -> None:
        if self.pid <= 0:
            raise ValueError(f"pid must be positive, not {self.pid}")
        if self.start_ticks < 0:
            raise ValueError(f"start time must not be negative, not {self.start_ticks}")
        if not self.boot_id:
            raise ValueError("boot id must not be empty")

    @property
    def started_since_boot(self) -> float:
        """When it started, in seconds on the boot-time clock (CLOCK_BOOTTIME)."""
        return self.start_ticks / CLOCK_TICKS

    @property
    def started_at(self) -> datetime:
        return self.started_at_when(time.time())

    def started_at_when(self, wall_now: float) -> datetime:
        """Its start in wall-clock time, given the wall clock reads `wall_now` at this moment.

        The age comes from the boot-time clock, which counts suspend as start ticks do and
        which no wall-clock step moves; /proc/stat's btime is both rounded to whole seconds
        and fixed at boot, so it would carry every later step into the result."""
        age = seconds_since_boot() - self.started_since_boot
        return datetime.fromtimestamp(wall_now - age, UTC)

    def is_alive(self) -> bool:
        """True while this very process (not a later one with the same pid) exists, even as
        a zombie its parent has not reaped."""
        return current_identity(self.pid) == self

    def is_running(self) -> bool:
        """True while this very process exists and has not exited (is not a zombie).

        A main thread that ended with pthread_exit leaves the process's own stat saying
        zombie while its other threads run on: such a process is still running."""
        stat = read_stat(self.pid)
        if stat is None or stat.start_ticks != self.start_ticks:
            return False
        return stat.state != "Z" or _has_live_thread(self.pid)

    def __str__(self) -> str:
        return f"pid {self.pid} (started at tick {self.start_ticks})"


@dataclass(frozen=True, slots=True)
class StatFields:
    """The few fields of /proc/<pid>/stat that ffrtmp needs."""

    state: str
    ppid: int
    start_ticks: int
    exit_code: int  # field 52: the raw wait status, meaningful only for a zombie


def parse_stat(raw: bytes) -> StatFields:
    # comm (field 2) may hold spaces and parentheses; everything after the last ')' is fixed.
    rest = raw[raw.rindex(b")") + 2 :].split()
    exit_status = int(rest[49]) if len(rest) > 49 else 0
    return StatFields(
        state=rest[0].decode(),
        ppid=int(rest[1]),
        start_ticks=int(rest[19]),
        exit_code=exit_status,
    )


def read_stat(pid: int | str) -> StatFields | None:
    """/proc/<pid>/stat's fields; `pid` may also be "<pid>/task/<tid>" for one thread."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return parse_stat(f.read())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def _has_live_thread(pid: int) -> bool:
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in threads:
        stat = read_stat(f"{pid}/task/{tid}")
        if stat is not None and stat.state not in ("Z", "X"):
            return True
    return False


def current_identity(pid: int) -> ProcessIdentity | None:
    """The identity of whatever process has this pid now, or None if there is none."""
    stat = read_stat(pid)
    if stat is None:
        return None
    return ProcessIdentity(boot_id(), pid, stat.start_ticks)
