"""How a command gets at the database, in one place: read commands through a read-only
connection, operator actions through the store of a database that already exists, and every
failure to open as one sentence instead of a traceback.

Only click is imported up front: the database modules load when a command opens one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import click

from ffrtmp.cli import on_central
from ffrtmp.cli.options import on_command_line

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from ffrtmp.store import Store


@contextmanager
def reading(db: str | None, *, exit_code: int = 1) -> Iterator[Connection]:
    """A read-only connection for one command, closed with its engine when the block ends.
    A database that cannot be read ends the command: one sentence and `exit_code`.
    On a central (PostgreSQL) URL: what the command declared (ffrtmp.cli.on_central), through
    ffrtmp.fleet.reads."""
    from ffrtmp.fleet.urls import is_central

    context = click.get_current_context(silent=True)
    if is_central(db):
        with central_reading(db, context, exit_code=exit_code) as conn:
            yield conn
        return
    if on_central.chosen_node(context):
        raise click.UsageError("--node is for a central (PostgreSQL) database")
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
def central_reading(
    db: str, context: click.Context | None, *, exit_code: int = 1
) -> Iterator[Connection]:
    """The central database as the running command declared it reads it: one node's rows
    (--node), every node's, or the central tables themselves; or the command's refusal."""
    from ffrtmp.fleet.reads import UnknownNode
    from ffrtmp.fleet.reads import central_reading as open_reading

    use, node = on_central.declared_use(context), on_central.chosen_node(context)
    if use.without_node == on_central.REFUSED and not (node and use.takes_node):
        raise click.UsageError(use.refusal)
    shadow = bool(node) or use.without_node == on_central.EVERY_NODE
    with ExitStack() as stack:
        try:
            with refusal_as_one_sentence(exit_code):
                conn = stack.enter_context(
                    open_reading(db, node, shadow=shadow, on_command_line=on_command_line(db))
                )
        except UnknownNode as exc:
            raise click.ClickException(str(exc)) from None
        yield conn


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
