"""`ffrtmp fleet`: the nodes that ship to a central database (docs/fleet.md)."""

from __future__ import annotations

import click

from ffrtmp.cli import on_central
from ffrtmp.cli.options import db_option, output_options


@click.group()
def fleet() -> None:
    """The fleet's central database: every node at a glance.

    Example: ffrtmp fleet status --db postgresql+psycopg://ops@fleet/ffrtmp
    """


@fleet.command()
@db_option
@on_central.every_node_only
@output_options
def status(db, as_json, as_csv) -> None:
    """One line per node: health status and since when, last shipped, how far the centre is
    behind (changes, seconds), processes governed now, pending retries, dead letters.

    Example: ffrtmp fleet status --json
    """
    from datetime import UTC, datetime

    from ffrtmp.cli.connect import reading
    from ffrtmp.cli.output import emit
    from ffrtmp.fleet.status import STATUS_COLUMNS, fleet_status, judged_by_node
    from ffrtmp.fleet.urls import is_central

    if not is_central(db):
        raise click.UsageError(
            "fleet status reads a central database: give --db postgresql+psycopg://... "
            "or set FFRTMP_DB"
        )
    # Every node's views, as `health --node` reads one, so that each is judged as that judges it.
    with reading(db) as every_node:
        now = datetime.now(UTC)
        rows = fleet_status(every_node.conn, now, judged_by_node(every_node.conn, now))
    emit(rows, STATUS_COLUMNS, as_json=as_json, as_csv=as_csv, empty="no node has shipped yet")
