"""The central database: recognising its URL, opening it, and keeping its schema at the head of
its own migration chain (fleet_migrations/, apart from the nodes' chain in migrations/).

Every failure is one sentence (ffrtmp.database.DatabaseError) naming the URL with its password
hidden and the server's reason with any password scrubbed out. A URL that carries a password on
the command line is refused: `ps` would show it to every user of the machine; the password goes
in a libpq password file, a service file, PGPASSWORD, or the URL in FFRTMP_DB / FFRTMP_SHIP_TO.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from ffrtmp.database import DatabaseError
from ffrtmp.revisions import find_head, known_revisions, read_graph

FLEET_MIGRATIONS = Path(
    importlib.util.find_spec("ffrtmp.fleet_migrations").submodule_search_locations[0]
)
SHIP_TO_ENV_VAR = "FFRTMP_SHIP_TO"
CONNECT_TIMEOUT_S = 10


def parse(raw: str, *, on_command_line: bool = False) -> URL:
    """The URL as SQLAlchemy takes it (driver psycopg 3), or one sentence saying what is wrong."""
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise DatabaseError("the central database URL cannot be parsed") from None
    backend, _, driver = url.drivername.partition("+")
    if backend not in ("postgresql", "postgres"):
        raise DatabaseError(
            f"{hidden(url)} is not a PostgreSQL URL; the central database is reached as "
            "postgresql+psycopg://USER@HOST/DBNAME"
        )
    if driver not in ("", "psycopg"):
        raise DatabaseError(
            f"{hidden(url)} names the driver {driver}; ffrtmp speaks to PostgreSQL through "
            "psycopg 3 (postgresql+psycopg://)"
        )
    if on_command_line and url.password:
        raise DatabaseError(
            f"{hidden(url)} carries a password on the command line, where `ps` shows it; "
            f"use a libpq password file (?passfile=...), a service (?service=...), PGPASSWORD "
            f"or the URL in {SHIP_TO_ENV_VAR} / FFRTMP_DB"
        )
    return url.set(drivername="postgresql+psycopg")


def hidden(url: URL | str) -> str:
    if isinstance(url, str):
        try:
            url = make_url(url)
        except (ArgumentError, ValueError):
            return "the central database URL"
    return url.render_as_string(hide_password=True)


def reason(exc: BaseException, url: URL | None = None) -> str:
    """The server's or driver's words, first line only, any password scrubbed out."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    secrets = [url.password] if url is not None and url.password else []
    if os.environ.get("PGPASSWORD"):
        secrets.append(os.environ["PGPASSWORD"])
    for secret in secrets:
        text = text.replace(str(secret), "***")
    return text


def make_central_engine(url: URL) -> Engine:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise DatabaseError(
            "the fleet needs the PostgreSQL driver psycopg 3: pip install 'ffrtmp[fleet]'"
        ) from None
    args = {} if "connect_timeout" in url.query else {"connect_timeout": CONNECT_TIMEOUT_S}
    return create_engine(url, connect_args=args, pool_pre_ping=True)


@lru_cache(maxsize=1)
def _graph() -> dict[str, tuple[str, ...]]:
    return read_graph(FLEET_MIGRATIONS / "versions")


def head_revision() -> str:
    return find_head(_graph())


def stored_revision(engine: Engine, url: URL) -> str | None:
    """The central schema revision, or None for a database without tables."""
    try:
        with engine.connect() as conn:
            has_version = conn.exec_driver_sql(
                "SELECT to_regclass('alembic_version') IS NOT NULL"
            ).scalar_one()
            if not has_version:
                tables = conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
                ).scalar_one()
                if tables:
                    raise DatabaseError(
                        f"database {hidden(url)} has tables but no ffrtmp fleet schema; "
                        "it was not created by `ffrtmp db upgrade`"
                    )
                return None
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    except DatabaseError:
        raise
    except (SQLAlchemyError, OSError, ImportError) as exc:  # ImportError: no psycopg
        raise DatabaseError(
            f"central database {hidden(url)} cannot be used: {reason(exc, url)}"
        ) from None


def _mismatch(url: URL, revision: str | None) -> str | None:
    head = head_revision()
    if revision == head:
        return None
    if revision is None:
        return (
            f"central database {hidden(url)} has no fleet schema yet; "
            "run `ffrtmp db upgrade --db URL`"
        )
    if revision in known_revisions():
        return (
            f"database {hidden(url)} holds a node's local schema (revision {revision}), "
            "not the fleet's central one"
        )
    if revision in _graph():
        return (
            f"central database {hidden(url)} has the older fleet schema {revision}; "
            "run `ffrtmp db upgrade --db URL`"
        )
    return (
        f"central database {hidden(url)} has fleet schema revision {revision}, which this ffrtmp "
        f"({head}) does not know; use the newer ffrtmp that wrote it"
    )


def open_central(raw: str, *, on_command_line: bool = False) -> Engine:
    """An engine on a central database at this code's head revision, or one sentence."""
    url = parse(raw, on_command_line=on_command_line)
    engine = make_central_engine(url)
    try:
        problem = _mismatch(url, stored_revision(engine, url))
        if problem:
            raise DatabaseError(problem)
    except BaseException:
        engine.dispose()
        raise
    return engine


def upgrade(raw: str, *, on_command_line: bool = False) -> str:
    """Create the central schema or bring it to the head; returns the revision it is at."""
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    url = parse(raw, on_command_line=on_command_line)
    engine = make_central_engine(url)
    try:
        revision = stored_revision(engine, url)
        if revision is not None and revision not in _graph():
            raise DatabaseError(_mismatch(url, revision))
        cfg = Config()
        cfg.set_main_option("script_location", str(FLEET_MIGRATIONS))
        try:
            with engine.begin() as connection:
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, "head")
        except (SQLAlchemyError, OSError, CommandError) as exc:
            raise DatabaseError(
                f"central database {hidden(url)} cannot be upgraded: {reason(exc, url)}"
            ) from None
        return stored_revision(engine, url) or "none"
    finally:
        engine.dispose()
