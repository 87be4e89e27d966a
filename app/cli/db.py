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

    Example: ffrtmp db upgrade --db /var/lib/ffrtmp/ffrtmp.db
    """
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
    """Exit 0 when the database is at this version's schema and matches its definition.

    Example: ffrtmp db check && echo ok
    """
    from ffrtmp import migrate

    with reading(db) as conn:
        diff = migrate.differences_from_schema(conn)
    if diff:
        raise click.ClickException(f"the database differs from the schema definition: {diff}")
    click.echo("schema matches")
