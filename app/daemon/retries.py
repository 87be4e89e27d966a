"""When the next retry is due, as a moment of the loop, and running the due ones.

The stored due times are wall times (`retry_items.next_attempt_at`); the loop's is derived from
them against the wall reading of the moment (`Moment.at_wall`), so a step of the wall clock,
once followed (ffrtmp.daemon.wall_clock), changes no delay.
"""

from __future__ import annotations

from ffrtmp.clock import Moment
from ffrtmp.daemon.errors import STORE_ERRORS, LoopErrors
from ffrtmp.retry import RetryWorker
from ffrtmp.store import Store


class RetrySchedule:
    def __init__(self, store: Store, worker: RetryWorker, errors: LoopErrors) -> None:
        self.store = store
        self.worker = worker
        self.errors = errors
        self.next_at: Moment | None = None

    def refresh(self, now: Moment) -> None:
        """The earliest stored due time; `ffrtmp retries requeue` may have added one."""
        try:
            at = self.store.next_retry_at()
        except STORE_ERRORS as exc:
            self.errors.record("store", exc, now)
            return
        self.next_at = now.at_wall(at.timestamp()) if at is not None else None

    def note(self, due: Moment) -> None:
        """A retry an attach has just queued."""
        self.next_at = due if self.next_at is None else min(self.next_at, due)

    def is_due(self, now: Moment) -> bool:
        return self.next_at is not None and now >= self.next_at

    def run_due(self, now: Moment) -> None:
        with self.errors.guard("retry", now):
            self.worker.run_due(now)
        self.refresh(now)
