"""`ffrtmp errors`: the classified errors the daemon met."""

from __future__ import annotations

import click

from ffrtmp import defaults
from ffrtmp.cli import on_central
from ffrtmp.cli.connect import reading
from ffrtmp.cli.listings import ERROR_STATS, ERRORS
from ffrtmp.cli.options import db_option, output_options
from ffrtmp.cli.params import limit_option, repeatable_choice_option, since_option
from ffrtmp.cli.table import columns_option
from ffrtmp.states import ErrorType


@click.group()
def errors() -> None:
    """Errors the daemon recorded, by type (transient, permanent, rate_limit, resource,
    unknown) and operation (scan, attach, store, ...).

    Example: ffrtmp errors stats --since 1d
    """


@errors.command("list")
@db_option
@on_central.every_node
@repeatable_choice_option("--type", "types", ErrorType, "Only errors of this type (repeatable).")
@click.option(
    "--operation",
    "operations",
    multiple=True,
    metavar="NAME",
    help="Only errors of this operation, e.g. attach (repeatable).",
)
@since_option
@click.option("--pid", type=int, help="Only errors about this pid.")
@limit_option(defaults.CLI_LIST_LIMIT)
@columns_option(ERRORS)
@output_options
def list_(db, types, operations, since, pid, limit, columns, as_json, as_csv) -> None:
    """List errors, newest first.

    Example: ffrtmp errors list --type resource --since 2h
    """
    from ffrtmp import queries
    from ffrtmp.cli.table import emit_listing

    with reading(db) as conn:
        rows = queries.list_errors(
            conn, types=types, operations=operations, since=since, pid=pid, limit=limit
        )
    emit_listing(rows, ERRORS, columns=columns, as_json=as_json, as_csv=as_csv, empty="no errors")


@errors.command()
@db_option
@on_central.every_node
@since_option
@output_options
def stats(db, since, as_json, as_csv) -> None:
    """Count errors by type and operation, the most frequent first.

    Example: ffrtmp errors stats --since 7d --json
    """
    from ffrtmp import queries
    from ffrtmp.cli.table import emit_listing

    with reading(db) as conn:
        rows = queries.error_stats(conn, since=since)
    emit_listing(rows, ERROR_STATS, as_json=as_json, as_csv=as_csv, empty="no errors")
