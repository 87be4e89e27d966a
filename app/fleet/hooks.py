"""The small hooks by which the shared commands (db, the read commands) reach the fleet code
when --db / FFRTMP_DB is a PostgreSQL URL; on any other database they do nothing."""

from __future__ import annotations

import os

import click

from ffrtmp import defaults


def is_central(db: str | None) -> bool:
    if not db or "://" not in str(db):
        return False
    return str(db).split("://", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def on_command_line(db: str | None, env_var: str = defaults.DB_ENV_VAR) -> bool:
    """Whether the URL was typed as a flag (visible in `ps`) rather than taken from the
    environment."""
    return db is not None and db != os.environ.get(env_var)


def central_upgrade_or_none(db: str | None) -> bool:
    """`ffrtmp db upgrade` on a PostgreSQL URL: the central schema; False for a node's db."""
    if not is_central(db):
        return False
    from ffrtmp.cli.connect import refusal_as_one_sentence
    from ffrtmp.fleet import central

    with refusal_as_one_sentence():
        revision = central.upgrade(db, on_command_line=on_command_line(db))
    click.echo(f"{central.hidden(db)}: fleet schema at revision {revision}")
    return True
