"""`ffrtmp sql`: the operator's own read-only query."""

from __future__ import annotations

import click

from ffrtmp.cli.connect import reading
from ffrtmp.cli.options import db_option, output_options
from ffrtmp.fleet.hooks import read_node_option


@click.command()
@db_option
@read_node_option
@click.argument("statement", metavar='"SELECT ..."')
@output_options
def sql(db: str | None, statement: str, as_json: bool, as_csv: bool) -> None:
    """Run one SQL statement on a read-only connection; writes are refused by SQLite itself
    (on a central PostgreSQL database: by its read-only transactions, see docs/fleet.md).
    Times are stored as UTC text ('2026-01-31 12:00:00.000000').

    Example: ffrtmp sql "SELECT state, count(*) FROM processes GROUP BY state"
    """
    from ffrtmp import operator_sql
    from ffrtmp.cli.output import emit

    with reading(db) as conn:
        try:
            columns, rows = operator_sql.run_sql(conn, statement)
        except operator_sql.QueryError as exc:
            raise click.ClickException(str(exc)) from None
    if not columns:
        click.echo("the statement returned no rows")
        return
    emit(rows, columns, as_json=as_json, as_csv=as_csv, empty="no rows")
