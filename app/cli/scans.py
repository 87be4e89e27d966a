"""`ffrtmp scans`: the daemon's passes over the process table."""

from __future__ import annotations

import click

from ffrtmp import defaults
from ffrtmp.cli import on_central
from ffrtmp.cli.connect import reading
from ffrtmp.cli.listings import SCANS
from ffrtmp.cli.options import db_option, output_options
from ffrtmp.cli.params import limit_option, since_option
from ffrtmp.cli.table import columns_option


@click.group()
def scans() -> None:
    """Scans the daemon made: when, how long, what they saw and found.

    Example: ffrtmp scans list --since 15m
    """


@scans.command("list")
@db_option
@on_central.every_node
@since_option
@limit_option(defaults.CLI_LIST_LIMIT)
@columns_option(SCANS)
@output_options
def list_(db, since, limit, columns, as_json, as_csv) -> None:
    """List scans, newest first.

    Example: ffrtmp scans list --limit 20 --csv
    """
    from ffrtmp import queries
    from ffrtmp.cli.table import emit_listing

    with reading(db) as conn:
        rows = queries.list_scans(conn, since=since, limit=limit)
    emit_listing(rows, SCANS, columns=columns, as_json=as_json, as_csv=as_csv, empty="no scans")
