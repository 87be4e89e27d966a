"""Writes the database refused, kept in memory in order and written once it takes them again.

The daemon's first duty is to govern; recording comes second. A write that fails because of
the store itself (locked past the busy timeout, a full disk, an I/O error, the `store.commit`
failpoint) is queued here instead of being lost or stopping the loop; every later write that
goes through the outbox queues behind it, so a process's rows are written in the order they
happened (its registration before its exit). The loop calls flush() at every step; while the
store keeps refusing, it tries again after a growing pause (RETRY_FIRST_S doubling up to
RETRY_MAX_S), since each try may wait out SQLite's busy timeout and governing must not. The
pauses run on the monotonic reading of each call's moment (ffrtmp.clock.Moment), so a step of
the wall clock neither shortens nor lengthens them.

A write that fails for any other reason (a bug, a value the database refuses) is no store
failure: it is dropped with a log line rather than block every write queued behind it.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ffrtmp.clock import Moment

log = logging.getLogger(__name__)

# Held in memory at most; past it the oldest queued write is dropped (and counted), so a
# database that never comes back cannot grow the daemon without bound.
MAX_PENDING_WRITES = 100_000
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0

# SQLite's own result codes (sqlite3.Error.sqlite_errorcode & 0xFF) that say the store, not
# the statement, is at fault: busy/locked, no space, I/O, read-only, cannot open, protocol.
_STORE_RESULT_CODES = frozenset({5, 6, 13, 10, 8, 14, 15})
_STORE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EAGAIN})


def is_store_failure(exc: BaseException) -> bool:
    """True when `exc` says the database cannot take writes now (it may later)."""
    cause = getattr(exc, "orig", None) or exc
    if isinstance(cause, sqlite3.OperationalError):
        code = getattr(cause, "sqlite_errorcode", None)
        return code is None or (code & 0xFF) in _STORE_RESULT_CODES
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, sa_exc.OperationalError):
        return True
    # The failpoint `store.commit` raises a plain OSError, as a failing disk would.
    return isinstance(cause, OSError) and cause.errno in _STORE_ERRNOS


@dataclass
class PendingWrite:
    description: str
    write: Callable[[], object]


class Outbox:
    """`on_result(error)` is told of every attempt: None for a write that went through."""

    def __init__(self, on_result: Callable[[BaseException | None], None] | None = None) -> None:
        self._pending: deque[PendingWrite] = deque()
        self.on_result = on_result
        self.dropped = 0  # writes given up: not a store failure, or past MAX_PENDING_WRITES
        self._retry_in = RETRY_FIRST_S
        self._next_try_at: Moment | None = None
        self._flushing = False

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def next_try_at(self) -> Moment | None:
        """When flush() tries again, for a loop that waits; None when nothing waits."""
        return self._next_try_at if self._pending else None

    def write(self, description: str, write: Callable[[], object], now: Moment) -> bool:
        """Write now, or queue it behind the writes already waiting; True when written.
        A failure that is not the store's is raised, as without an outbox. A queued write that
        writes more (through this outbox) does so at once: its failure fails that queued
        write, which is tried again whole."""
        if self._flushing:
            write()
            return True
        if self._pending:
            self.defer(description, write)
            return False
        try:
            write()
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            self._report(exc)
            log.warning(
                "%s is kept in memory until the database takes writes: %s", description, _why(exc)
            )
            self.defer(description, write)
            self._schedule_retry(now)
            return False
        self._report(None)
        return True

    def defer(self, description: str, write: Callable[[], object]) -> None:
        if len(self._pending) >= MAX_PENDING_WRITES:
            lost = self._pending.popleft()
            self.dropped += 1
            log.error("dropped the oldest write kept in memory (%s)", lost.description)
        self._pending.append(PendingWrite(description, write))

    def flush(self, now: Moment, force: bool = False) -> bool:
        """Write what waits, in order, until one fails; True when nothing waits any more.
        Before the pause after the last refusal is over, only `force` tries."""
        if not self._pending:
            return True
        if not force and self._next_try_at is not None and now < self._next_try_at:
            return False
        written = 0
        while self._pending:
            pending = self._pending[0]
            self._flushing = True
            try:
                pending.write()
            except Exception as exc:
                if is_store_failure(exc):
                    self._report(exc)
                    self._schedule_retry(now)
                    return False
                self._pending.popleft()
                self.dropped += 1
                log.error("%s dropped: %s", pending.description, exc)
                continue
            finally:
                self._flushing = False
            self._pending.popleft()
            written += 1
            self._report(None)
        if written:
            log.info("the database takes writes again: %d kept in memory are written", written)
        self._retry_in, self._next_try_at = RETRY_FIRST_S, None
        return True

    def _schedule_retry(self, now: Moment) -> None:
        if self._next_try_at is None:
            self._retry_in = RETRY_FIRST_S
        else:
            self._retry_in = min(RETRY_MAX_S, self._retry_in * 2)
        self._next_try_at = now + self._retry_in

    def _report(self, error: BaseException | None) -> None:
        if self.on_result is not None:
            self.on_result(error)


def _why(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    text = str(cause)
    return text.splitlines()[0] if text else type(cause).__name__
