"""`ffrtmp sql`: the operator's own statement, on a connection that can only read."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError


class QueryError(Exception):
    """An operator's SQL that SQLite refused; the message is one sentence."""


def run_sql(conn: Connection, statement: str) -> tuple[list[str], list[dict]]:
    """The column names and rows of the operator's own statement, which may only read.

    The engine opened the file read-only (mode=ro); on top of that this connection is made
    query-only and ATTACH is denied, since ATTACH would create a new database file."""
    import sqlite3

    raw = conn.connection.driver_connection
    is_sqlite = isinstance(raw, sqlite3.Connection)
    try:
        if is_sqlite:
            conn.exec_driver_sql("PRAGMA query_only = ON")
            raw.set_authorizer(_deny_attach)
        # exec_driver_sql: the operator's text goes to SQLite as written ('12:30' is no bind).
        result = conn.exec_driver_sql(statement)
        if not result.returns_rows:
            return [], []
        columns = list(result.keys())
        return columns, [dict(zip(columns, row, strict=True)) for row in result]
    except SQLAlchemyError as exc:
        raise QueryError(_sql_message(exc)) from None
    finally:
        if is_sqlite:
            raw.set_authorizer(None)


def _deny_attach(action: int, *_args: Any) -> int:
    import sqlite3

    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _sql_message(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None)
    reason = str(original) if original is not None else str(exc).split("\n")[0]
    if "not authorized" in reason:
        return "the database is opened read-only: ATTACH and DETACH are not allowed"
    if "readonly" in reason or "read-only" in reason:
        return f"the database is opened read-only: {reason}; nothing was changed"
    return f"the SQL failed: {reason}"
