"""What went wrong in the loop: each failure classified, counted in health, logged, and kept as
an error event (through the outbox, so a database that refuses writes delays it, never loses it).

The loop's steps each run under `guard()`, a catch-all so that one failing part never stops the
loop from governing. What it catches that is a programming error (a TypeError, an
AttributeError: a bug, not the world) is logged with its traceback and counted in `internal`,
which /metrics (`ffrtmp_internal_errors_total`) and every health snapshot show, so a bug never
passes for an ordinary failure. Inside the parts, each `except` names the errors it means:
`STORE_ERRORS` for the database, OSError for the kernel.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import SQLAlchemyError

from ffrtmp.clock import Clock, Moment
from ffrtmp.errors import classify, is_programming_error
from ffrtmp.health import HealthTracker
from ffrtmp.outbox import Outbox, is_store_failure
from ffrtmp.store import Store
from ffrtmp.utctime import utc

log = logging.getLogger("ffrtmp.daemon")

# What a read or a write of the database raises when the database, not the code, is at fault
# (locked, full, gone, a value it refuses); the failpoint `store.commit` raises an OSError.
STORE_ERRORS = (SQLAlchemyError, sqlite3.Error, OSError)


class LoopErrors:
    def __init__(self, store: Store, health: HealthTracker, outbox: Outbox, clock: Clock) -> None:
        self.store = store
        self.health = health
        self.outbox = outbox
        self.clock = clock
        self.internal = 0  # programming errors caught; see the module's docstring

    @contextmanager
    def guard(self, operation: str, now: Moment, pid: int | None = None) -> Iterator[None]:
        """Whatever fails inside is recorded, and the loop goes on governing."""
        try:
            yield
        except Exception as exc:  # the loop's catch-all: recorded, bugs counted
            self.record(operation, exc, now, pid=pid)

    def record(
        self, operation: str, exc: BaseException, now: Moment, pid: int | None = None
    ) -> None:
        if is_store_failure(exc) and self.health.evaluate(now).store_failing_since is not None:
            # Counted and queued as one error event of the failing store already.
            log.warning("%s failed: the database cannot be written", operation)
            return
        error = classify(exc)
        self.health.record_error(str(error.error_type))
        if not self.count_if_bug(operation, exc):
            log.warning(
                "%s failed%s: %s [%s]",
                operation,
                f" for pid {pid}" if pid else "",
                error.message,
                error.error_type,
            )
        try:
            self.outbox.write(
                f"the {operation} error",
                lambda: self.store.record_error(operation, error, now=utc(now.wall), pid=pid),
                now,
            )
        except STORE_ERRORS as store_exc:  # not a store failure (the outbox keeps those)
            log.error("could not record the %s error: %s", operation, store_exc)

    def count_if_bug(self, operation: str, exc: BaseException) -> bool:
        """A programming error is logged with its traceback and counted; True if it was one."""
        if not is_programming_error(exc):
            return False
        self.internal += 1
        log.error(
            "%s failed on a programming error (%d so far; please report it): %s: %s",
            operation,
            self.internal,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        return True

    def store_write_result(self, exc: BaseException | None) -> None:
        """Every write transaction's outcome: health follows the store, and each run of
        refused writes is one error event, written once the store takes writes again."""
        now = self.clock.now()
        if exc is None:
            self.health.record_store_write(None, now)
            return
        if not is_store_failure(exc):
            return
        error = classify(exc)
        first = self.health.evaluate(now).store_failing_since is None
        self.health.record_store_write(f"{error.message} [{error.error_type}]", now)
        if first:
            self.health.record_error(str(error.error_type))
            log.error("the database cannot be written: %s [%s]", error.message, error.error_type)
            self.outbox.defer(
                "the store error",
                lambda: self.store.record_error("store", error, now=utc(now.wall)),
            )
