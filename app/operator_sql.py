"""`ffrtmp sql`: the operator's own statement, on a connection that can only read, for a bounded
time and a bounded number of rows.

A statement runs inside SQLite's C code, where Python neither runs its SIGINT handler nor
checks a clock; a progress handler, called every PROGRESS_STEPS virtual-machine steps, does
both: it ends the statement once its time is up or Ctrl-C was pressed. Rows are fetched only up
to the cap, so a statement that yields millions of them costs no more memory than the cap.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_ROWS = 10_000
PROGRESS_STEPS = 10_000  # about a millisecond of SQLite's work between two looks
POSTGRES_QUERY_CANCELED = "57014"  # statement_timeout (or a cancel) ended the statement


class QueryError(Exception):
    """An operator's SQL that SQLite refused or that was stopped; one sentence."""


class QueryInterrupted(QueryError):
    """Ctrl-C ended the statement."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[dict]
    truncated: bool = False  # more rows than max_rows: only the first max_rows are here


@dataclass
class _Guard:
    """What the progress handler and the authorizer found, for the message afterwards."""

    deadline: float | None
    interrupted: bool = False
    timed_out: bool = False
    denied: list[str] = field(default_factory=list)

    def progress(self) -> int:
        if self.interrupted:
            return 1
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.timed_out = True
            return 1
        return 0

    def authorize(self, action: int, arg1: Any, arg2: Any, *_rest: Any) -> int:
        import sqlite3

        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            self.denied.append("attach")
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION and str(arg2).lower() == "load_extension":
            self.denied.append("load_extension")
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK


@contextmanager
def _ctrl_c_sets(guard: _Guard) -> Iterator[None]:
    """While the statement runs, SIGINT marks it to be stopped (in the main thread only, where
    Python lets a handler be set)."""
    try:
        previous = signal.signal(signal.SIGINT, lambda *_: setattr(guard, "interrupted", True))
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_sql(
    conn: Connection,
    statement: str,
    *,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    max_rows: int | None = DEFAULT_MAX_ROWS,
) -> QueryResult:
    """The column names and at most `max_rows` rows of the operator's own statement, which may
    only read and must end within `timeout_s` (None: no bound for either).

    The engine opened the file read-only (mode=ro); on top of that this connection is made
    query-only, ATTACH is denied (it would create a new database file) and so is
    load_extension()."""
    import sqlite3

    raw = conn.connection.driver_connection
    is_sqlite = isinstance(raw, sqlite3.Connection)
    guard = _Guard(None if not timeout_s else time.monotonic() + timeout_s)
    try:
        # PostgreSQL (the fleet's central database, ffrtmp.fleet.reads) bounds the statement
        # itself, and its driver cancels it on KeyboardInterrupt: no handler of ours there.
        with _ctrl_c_sets(guard) if is_sqlite else nullcontext():
            if is_sqlite:
                conn.exec_driver_sql("PRAGMA query_only = ON")
                raw.set_authorizer(guard.authorize)
                raw.set_progress_handler(guard.progress, PROGRESS_STEPS)
            elif timeout_s:
                conn.exec_driver_sql(
                    "SELECT set_config('statement_timeout', %s, true)", (f"{timeout_s * 1000:.0f}",)
                )
            # exec_driver_sql: the operator's text goes to SQLite as written ('12:30' is no
            # bind).
            result = conn.exec_driver_sql(statement)
            if not result.returns_rows:
                return QueryResult([], [])
            columns = list(result.keys())
            fetched = result.fetchmany(max_rows + 1) if max_rows else result.fetchall()
            truncated = bool(max_rows) and len(fetched) > max_rows
            result.close()
            rows = [dict(zip(columns, row, strict=True)) for row in fetched[:max_rows]]
            return QueryResult(columns, rows, truncated)
    except SQLAlchemyError as exc:
        if getattr(getattr(exc, "orig", None), "sqlstate", None) == POSTGRES_QUERY_CANCELED:
            guard.timed_out = True
        raise _stopped_or_refused(exc, guard, timeout_s) from None
    except KeyboardInterrupt:  # PostgreSQL's: the driver has cancelled the statement
        guard.interrupted = True
        raise _stopped_or_refused(Exception(), guard, timeout_s) from None
    finally:
        if is_sqlite:
            raw.set_progress_handler(None, 0)
            raw.set_authorizer(None)


def _stopped_or_refused(exc: SQLAlchemyError, guard: _Guard, timeout_s: float | None) -> Exception:
    if guard.interrupted:
        return QueryInterrupted("the query was interrupted (Ctrl-C); nothing was changed")
    if guard.timed_out:
        return QueryError(
            f"the query was stopped after {timeout_s:g}s (--timeout DURATION allows longer, "
            "0 for no limit)"
        )
    if "load_extension" in guard.denied:
        return QueryError("load_extension() is not allowed: ffrtmp sql loads no extensions")
    return QueryError(_sql_message(exc))


def _sql_message(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None)
    reason = str(original) if original is not None else str(exc).split("\n")[0]
    if "not authorized" in reason:
        return "the database is opened read-only: ATTACH and DETACH are not allowed"
    if "readonly" in reason or "read-only" in reason:
        return f"the database is opened read-only: {reason}; nothing was changed"
    return f"the SQL failed: {reason}"
