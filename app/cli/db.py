"""`ffrtmp db`: the database's schema revision, and pruning its history (app/cli/prune.py)."""

from __future__ import annotations

import click

from ffrtmp.cli.connect import open_for_writing_or_fail, reading, refusal_as_one_sentence
from ffrtmp.cli.options import db_option
from ffrtmp.cli.prune import prune


@click.group()
def db() -> None:
    """Create, upgrade and check the database schema; remove old history.

    Example: ffrtmp db upgrade --db /var/lib/ffrtmp/ffrtmp.db
    """


db.add_command(prune)


@db.command()
@db_option
def upgrade(db: str | None) -> None:
    """Create the database, or upgrade it to this version's schema (after a backup copy).

    On a PostgreSQL URL: create or upgrade the fleet's central schema (docs/fleet.md).

    Example: ffrtmp db upgrade --db /var/lib/ffrtmp/ffrtmp.db
    """
    from ffrtmp.cli.central import central_upgrade_or_none

    if central_upgrade_or_none(db):
        return
    from ffrtmp import database

    location = database.resolve(db)
    engine = open_for_writing_or_fail(db)
    click.echo(f"{location}: schema at revision {database.stored_revision(engine)}")
    engine.dispose()


@db.command()
@db_option
def current(db: str | None) -> None:
    """Print the database's schema revision and whether it is this version's.

    Example: ffrtmp db current
    """
    from ffrtmp.cli.central import central_current_or_none

    if central_current_or_none(db):
        return
    from ffrtmp import database
    from ffrtmp.revisions import head_revision

    location = database.resolve(db)
    if location.path is not None and not location.path.exists():
        raise click.ClickException(f"database {location} does not exist")
    with refusal_as_one_sentence():
        revision = database.read_revision(location)
    head = head_revision()
    state = "head" if revision == head else f"head is {head}"
    click.echo(f"{revision or 'none'} ({state})")


@db.command()
@db_option
def check(db: str | None) -> None:
    """Exit 0 when the database is at this version's schema, matches its definition, and
    passes SQLite's integrity check (every page and index read and verified).

    On a PostgreSQL URL: the fleet's central schema is at this version's head and matches
    its definition.

    Example: ffrtmp db check && echo ok
    """
    from ffrtmp.cli.central import central_check_or_none

    if central_check_or_none(db):
        return
    from sqlalchemy.exc import DBAPIError

    from ffrtmp import migrate

    with reading(db) as conn:
        diff = migrate.differences_from_schema(conn)
        try:
            problems = [row[0] for row in conn.exec_driver_sql("PRAGMA integrity_check(20)")]
        except DBAPIError as exc:  # damage that stops the check itself
            problems = [str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__]
    if diff:
        raise click.ClickException(f"the database differs from the schema definition: {diff}")
    if problems != ["ok"]:
        # One row may hold several lines ("*** in database main ***", then one per problem).
        problems = [
            line.strip()
            for row in problems
            for line in row.splitlines()
            if line.strip() and not line.startswith("***")
        ]
        shown = "; ".join(problems[:3]) + (
            f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        )
        raise click.ClickException(
            f"the database fails SQLite's integrity check: {shown} "
            "(restore a backup copy, or salvage it with sqlite3's .recover)"
        )
    click.echo("schema matches, integrity ok")
