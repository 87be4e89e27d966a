"""`ffrtmp sql`: the operator's own read-only query."""

from __future__ import annotations

import click

from ffrtmp.cli import on_central
from ffrtmp.cli.connect import reading
from ffrtmp.cli.options import db_option, output_options
from ffrtmp.cli.params import DURATION


@click.command()
@db_option
@on_central.central_tables
@click.argument("statement", metavar='"SELECT ..."')
@click.option(
    "--timeout",
    "timeout_s",
    type=DURATION,
    default="30s",
    show_default=True,
    help="Stop the statement after this long (0: no limit).",
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=0),
    default=10_000,
    show_default=True,
    help="Print at most this many rows (0: no limit); a note on stderr says when more came.",
)
@output_options
def sql(
    db: str | None,
    statement: str,
    timeout_s: float,
    max_rows: int,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Run one SQL statement on a read-only connection; writes are refused by SQLite itself
    (on a central PostgreSQL database: by its read-only transactions, see docs/fleet.md).
    Times are stored as UTC text ('2026-01-31 12:00:00.000000'). The statement is stopped
    after --timeout or at Ctrl-C (exit 130); load_extension() and ATTACH are refused.

    Example: ffrtmp sql "SELECT state, count(*) FROM processes GROUP BY state"
    """
    from ffrtmp import operator_sql
    from ffrtmp.cli.output import emit

    with reading(db) as conn:
        try:
            result = operator_sql.run_sql(
                conn, statement, timeout_s=timeout_s or None, max_rows=max_rows or None
            )
        except operator_sql.QueryInterrupted as exc:
            click.echo(f"Error: {exc}", err=True)
            raise SystemExit(130) from None
        except operator_sql.QueryError as exc:
            raise click.ClickException(str(exc)) from None
    if not result.columns:
        click.echo("the statement returned no rows")
        return
    emit(result.rows, result.columns, as_json=as_json, as_csv=as_csv, empty="no rows")
    if result.truncated:
        click.echo(f"stopped after {max_rows} rows; --max-rows N shows more (0: all)", err=True)
