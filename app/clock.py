"""The daemon's two clocks: a monotonic one for everything that waits, the wall clock for
everything that is stored.

NTP may step the wall clock by hours (a node that booted with a dead RTC, a hand-set date).
A scan "due at wall time T" then comes an hour late, or a whole day's worth of work looks
overdue at once. So the loop schedules on `monotonic()` and converts to wall time only when it
writes a row. A process's age comes from the boot-time clock against its start ticks, which
no step moves (ffrtmp.identity).

A moment of the daemon is a `Moment`: both readings, taken together by `Clock.now()`. Whatever
waits or ages compares `monotonic` readings (`seconds_since`, `<`); whatever is stored uses
`wall`. There is no bare float called `now`: a `Moment` neither compares with nor subtracts
from a float, so mixing the two bases is a type error (and a TypeError at run time), not a test
that fails under load. `moment + seconds` is the moment that many seconds later on both
clocks; `moment.at_wall(t)` is the moment of a stored wall time, judged by this moment's
reading of the wall clock.

`SystemClock.monotonic()` is CLOCK_MONOTONIC moved so that it reads the wall time at the
moment this module was loaded: numbers in logs and debuggers look like dates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

# A wall clock that moved this far against the monotonic one between two looks was stepped
# (NTP slews at most 0.5 ms per second; a loop iteration lasts at most a few minutes).
STEP_TOLERANCE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Moment:
    """One moment, on both clocks: `monotonic` for waiting and ageing, `wall` for rows."""

    monotonic: float
    wall: float

    def __add__(self, seconds: float) -> Moment:
        if not isinstance(seconds, int | float):
            return NotImplemented
        return Moment(self.monotonic + seconds, self.wall + seconds)

    def __sub__(self, seconds: float) -> Moment:
        if not isinstance(seconds, int | float):
            return NotImplemented  # the time between two moments: seconds_since()
        return Moment(self.monotonic - seconds, self.wall - seconds)

    def seconds_since(self, earlier: Moment) -> float:
        """Seconds from `earlier` to this moment, on the clock no step moves."""
        return self.monotonic - earlier.monotonic

    def at_wall(self, wall: float) -> Moment:
        """The moment a stored wall time names, judged by this moment's wall clock."""
        return Moment(self.monotonic + (wall - self.wall), wall)

    @property
    def offset(self) -> float:
        """wall - monotonic: what a step of the wall clock changes."""
        return self.wall - self.monotonic

    def _key(self, other: object) -> float:
        if not isinstance(other, Moment):
            raise TypeError(f"a Moment compares with a Moment, not {type(other).__name__}")
        return other.monotonic

    def __lt__(self, other: Moment) -> bool:
        return self.monotonic < self._key(other)

    def __le__(self, other: Moment) -> bool:
        return self.monotonic <= self._key(other)

    def __gt__(self, other: Moment) -> bool:
        return self.monotonic > self._key(other)

    def __ge__(self, other: Moment) -> bool:
        return self.monotonic >= self._key(other)


class Clock(Protocol):
    def now(self) -> Moment:
        """Both readings, taken together."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch, as stored in rows; may jump."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps; only differences between readings count."""
        ...


# Taken once, so that every SystemClock of a process reads the same monotonic time.
_MONOTONIC_ZERO = time.time() - time.monotonic()


class SystemClock:
    def __init__(self) -> None:
        self._zero = _MONOTONIC_ZERO

    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return self._zero + time.monotonic()

    def now(self) -> Moment:
        return Moment(self.monotonic(), self.wall())


_SYSTEM_CLOCK = SystemClock()


def system_now() -> Moment:
    """The moment now, for a command that runs once (`ffrtmp attach`, `ffrtmp run`)."""
    return _SYSTEM_CLOCK.now()


def seconds_since_boot() -> float:
    """CLOCK_BOOTTIME: the clock a process's start ticks count on, suspend included."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)
