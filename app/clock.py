"""The daemon's two clocks: a monotonic one for everything that waits, the wall clock for
everything that is stored.

NTP may step the wall clock by hours (a node that booted with a dead RTC, a hand-set date).
A scan "due at wall time T" then comes an hour late, or a whole day's worth of work looks
overdue at once. So the loop schedules on `monotonic()` and converts to wall time only when it
writes a row. A process's age comes from the boot-time clock against its start ticks, which
no step moves (ffrtmp.identity).

`SystemClock.monotonic()` is CLOCK_MONOTONIC moved so that it reads the wall time at the
moment the clock was made: numbers in logs and debuggers look like dates, and a test that
drives the loop with epoch seconds (`daemon.step(time.time() + 5)`) schedules as before.
"""

from __future__ import annotations

import time
from typing import Protocol

# A wall clock that moved this far against the monotonic one between two looks was stepped
# (NTP slews at most 0.5 ms per second; a loop iteration lasts at most a few minutes).
STEP_TOLERANCE_SECONDS = 1.0


class Clock(Protocol):
    def wall(self) -> float:
        """Seconds since the epoch, as stored in rows; may jump."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps; only differences between readings count."""
        ...


class SystemClock:
    def __init__(self) -> None:
        self._zero = time.time() - time.monotonic()

    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return self._zero + time.monotonic()


def wall_at(clock: Clock, monotonic: float) -> float:
    """The wall time of a monotonic reading, as the wall clock stands now."""
    return monotonic + (clock.wall() - clock.monotonic())


def seconds_since_boot() -> float:
    """CLOCK_BOOTTIME: the clock a process's start ticks count on, suspend included."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)
