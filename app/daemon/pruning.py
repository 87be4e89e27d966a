"""Retention while the daemon runs: a few small batches at a time, so a scan never waits long
behind it; a full slice means more may be left, and the next comes a second later."""

from __future__ import annotations

import logging

from ffrtmp import defaults
from ffrtmp.clock import Moment
from ffrtmp.daemon.errors import STORE_ERRORS, LoopErrors
from ffrtmp.store import Store
from ffrtmp.utctime import utc

log = logging.getLogger("ffrtmp.daemon")

BATCHES_PER_STEP = 4
INTERVAL_SECONDS = 3600.0


class PruneSchedule:
    def __init__(self, store: Store, errors: LoopErrors, retention_s: float) -> None:
        self.store = store
        self.errors = errors
        self.retention_s = retention_s  # a reload sets the new one
        self.next_at: Moment | None = None  # None: at once

    def is_due(self, now: Moment) -> bool:
        return self.next_at is None or now >= self.next_at

    def slice(self, now: Moment) -> None:
        from ffrtmp.prune import describe_removed, prune

        self.next_at = now + INTERVAL_SECONDS  # also after a failure, whatever it was
        try:
            removed = prune(
                self.store, self.retention_s, utc(now.wall), max_batches=BATCHES_PER_STEP
            )
        except STORE_ERRORS as exc:
            self.errors.record("prune", exc, now)
            return
        total = sum(removed.values())
        if total:
            log.info(
                "retention: removed %s older than %ss", describe_removed(removed), self.retention_s
            )
        full = total >= BATCHES_PER_STEP * defaults.PRUNE_BATCH_ROWS
        self.next_at = now + (1.0 if full else INTERVAL_SECONDS)
