"""Following the wall clock: a step of it (NTP correcting a node that booted with a wrong date)
moves the stored due times of pending retries with it, so each keeps its delay.

The loop schedules on the monotonic reading of its moments and stores their wall reading
(ffrtmp.clock.Moment); `retry_items.next_attempt_at` is a wall time set as "now + delay" on the
wall clock before the step. A retry queued by another process between the step and this look
is moved too: a rare, bounded error of one step's size, once.
"""

from __future__ import annotations

import logging

from ffrtmp.clock import STEP_TOLERANCE_SECONDS, Moment
from ffrtmp.daemon.errors import STORE_ERRORS, LoopErrors
from ffrtmp.store import Store

log = logging.getLogger("ffrtmp.daemon")


class WallClockFollower:
    def __init__(self, store: Store, errors: LoopErrors, first: Moment) -> None:
        self.store = store
        self.errors = errors
        self.offset = first.offset  # wall - monotonic, as last followed

    def follow(self, now: Moment) -> None:
        stepped = now.offset - self.offset
        self.offset = now.offset
        if abs(stepped) < STEP_TOLERANCE_SECONDS:
            return  # NTP's slewing, not a step
        try:
            moved = self.store.shift_pending_retries(stepped)
        except STORE_ERRORS as exc:
            self.errors.record("store", exc, now)
            moved = "no"
        log.warning(
            "the wall clock was stepped by %+.3fs; %s pending retries keep their delays",
            stepped,
            moved,
        )
