"""How a command gets at the database, in one place: read commands through a read-only
connection, operator actions through the store of a database that already exists, and every
failure to open as one sentence instead of a traceback.

Only click is imported up front: the database modules load when a command opens one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from ffrtmp.store import Store


@contextmanager
def reading(db: str | None, *, exit_code: int = 1) -> Iterator[Connection]:
    """A read-only connection for one command, closed with its engine when the block ends.
    A database that cannot be read ends the command: one sentence and `exit_code`.
    On a central (PostgreSQL) URL, see ffrtmp.fleet.reads."""
    from ffrtmp.fleet.hooks import central_reading_or_none

    central = central_reading_or_none(db, exit_code)
    if central is not None:
        with central as conn:
            yield conn
        return
    from sqlalchemy.exc import DBAPIError

    from ffrtmp.database import open_readonly, resolve, unreadable_values

    with refusal_as_one_sentence(exit_code):
        engine = open_readonly(db)
    skipped_before = unreadable_values.count
    try:
        with engine.connect() as conn:
            yield conn
    except DBAPIError as exc:
        # A damaged file can pass the opening checks and fail on the page a query reads.
        failure = click.ClickException(
            f"database {resolve(db)} cannot be read: {_driver_words(exc)} "
            "(`ffrtmp db check` tells more)"
        )
        failure.exit_code = exit_code
        raise failure from None
    finally:
        engine.dispose()
    skipped = unreadable_values.count - skipped_before
    if skipped:
        click.echo(
            f"warning: {skipped} stored value(s) were not valid JSON and are shown as empty",
            err=True,
        )


@contextmanager
def existing_store(db: str | None) -> Iterator[Store]:
    """The store of a database that exists already, for an operator's action (a new database
    has nothing to act on, so none is created), closed when the block ends."""
    from ffrtmp.database import resolve
    from ffrtmp.store import Store

    path = resolve(db).path
    if path is not None and (not path.exists() or path.stat().st_size == 0):
        raise click.ClickException(f"database {path} does not exist")
    from sqlalchemy.exc import DBAPIError

    store = Store(open_for_writing_or_fail(db))
    try:
        yield store
    except DBAPIError as exc:
        raise click.ClickException(
            f"database {resolve(db)} cannot be written: {_driver_words(exc)}; nothing was changed"
        ) from None
    finally:
        store.close()


def _driver_words(exc) -> str:
    """SQLite's own sentence, without SQLAlchemy's [SQL: ...] block and documentation link."""
    return str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__


def open_for_writing_or_fail(db: str | None) -> Engine:
    """The writer's engine (creating or upgrading the database), or one sentence and exit 1."""
    from ffrtmp.database import open_for_writing

    with refusal_as_one_sentence():
        return open_for_writing(db)


@contextmanager
def refusal_as_one_sentence(exit_code: int = 1) -> Iterator[None]:
    """A database that cannot be used as asked ends the command: its one sentence, `exit_code`."""
    from ffrtmp.database import DatabaseError
    from ffrtmp.revisions import RevisionsError

    try:
        yield
    except (DatabaseError, RevisionsError) as exc:
        failure = click.ClickException(str(exc))
        failure.exit_code = exit_code
        raise failure from None
