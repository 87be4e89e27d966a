"""`ffrtmp health`: the daemon's health, judged again by the clock, and its history."""

from __future__ import annotations

import sys

import click

from ffrtmp import defaults
from ffrtmp.cli import on_central
from ffrtmp.cli.connect import reading
from ffrtmp.cli.options import db_option, output_options
from ffrtmp.cli.params import limit_option, since_option

EXIT_CODES = {"healthy": 0, "degraded": 1, "unhealthy": 2}
EXIT_NO_DAEMON = 2


@click.command()
@db_option
@on_central.one_node(
    "on a central database, health is one node's: give --node, or see every node's with "
    "`ffrtmp fleet status`"
)
@click.option("--history", is_flag=True, help="List the stored snapshots instead.")
@since_option
@limit_option(defaults.CLI_LIST_LIMIT)
@output_options
def health(db, history, since, limit, as_json, as_csv) -> None:
    """Print the daemon's health now. No daemon holding the database's lock (it died, even by
    SIGKILL, or was never started) is unhealthy at once; a `watch --once` run is no daemon.
    On a central (PostgreSQL) database, one node's (--node), judged from its shipped
    snapshots: none for two minutes means no daemon.
    Scan times and failure counts are read live; totals are as of the newest snapshot.
    Exit 0 healthy, 1 degraded, 2 unhealthy or no daemon.

    Example: ffrtmp health || alert "ffrtmp is not healthy"

    With --history, list the snapshots (with --since, --limit, --json or --csv).
    """
    from datetime import UTC, datetime

    from ffrtmp import queries, stored_health
    from ffrtmp.fleet.urls import is_central
    from ffrtmp.stored_health import NOT_CONSULTED

    if as_csv and not history:
        raise click.UsageError("--csv lists rows: use it with --history")
    with reading(db, exit_code=EXIT_NO_DAEMON) as conn:
        if history:
            rows = queries.list_health(conn, since=since, limit=limit)
        else:
            holder = NOT_CONSULTED if is_central(db) else _lock_holder(db)
            report = stored_health.current_health(conn, datetime.now(UTC), holder=holder)
    if history:
        from ffrtmp.cli.listings import HEALTH_HISTORY
        from ffrtmp.cli.table import emit_listing

        emit_listing(
            rows,
            HEALTH_HISTORY,
            as_json=as_json,
            as_csv=as_csv,
            empty="no health snapshots",
        )
        return
    if as_json:
        from ffrtmp.cli.records import print_record

        print_record(report, as_json=True)
    else:
        from ffrtmp.cli.table import use_colour

        colour = use_colour()
        click.echo(render_report(report, colour=colour), color=colour)
        if is_central(db):
            # The node's lock file is on the node: from the centre, absence is judged by time.
            click.echo(
                "judged from the node's shipped snapshots (its daemon lock is on the node): "
                f"no snapshot for {defaults.HEALTH_NO_DAEMON_SECONDS:.0f}s means no daemon; "
                "`ffrtmp fleet status` shows every node"
            )
    sys.exit(EXIT_CODES.get(report["status"], EXIT_NO_DAEMON))


def _lock_holder(db: str | None):
    """Who holds the database's daemon lock (None: nobody), or NOT_CONSULTED for a database
    that is no file (it has no lock file beside it)."""
    from ffrtmp.daemon_lock import running_daemon
    from ffrtmp.database import resolve
    from ffrtmp.stored_health import NOT_CONSULTED

    path = resolve(db).path
    if path is None:
        return NOT_CONSULTED
    try:
        return running_daemon(path)
    except OSError as exc:
        raise click.ClickException(
            f"cannot tell whether a daemon runs: lock file of {path}: {exc.strerror}"
        ) from None


def render_report(report: dict, *, colour: bool = False) -> str:
    """The report as lines for people, each escaped for the terminal (a reason may quote
    what a process wrote); the status coloured when `colour`."""
    from ffrtmp.cli.listings import STATE_COLOURS
    from ffrtmp.cli.output import local_time, relative
    from ffrtmp.printable import printable

    def moment(value) -> str:
        return "never" if value is None else f"{local_time(value)} ({relative(value)})"

    lines = ["status: "]
    lines += [f"  - {reason}" for reason in report["reasons"]]
    if report["status_since"] is not None:
        lines.append(f"in this state since: {moment(report['status_since'])}")
    if report["snapshot_id"] is not None:
        taken = report["snapshot_taken_at"]
        said = report["snapshot_status"]
        lines.append(
            f"last snapshot: {local_time(taken)} ({relative(taken)}), said {said}; "
            "totals are as of it"
        )
        lines.append(
            f"daemon: run {report['daemon_run_id'] or '-'}, pid {report['daemon_pid'] or '-'}, "
            f"discovery {report['discovery'] or '-'}"
        )
        for label, key in (
            ("last scan", "last_scan_at"),
            ("last successful scan", "last_successful_scan_at"),
            ("last successful attach", "last_successful_attach_at"),
        ):
            lines.append(f"{label}: {moment(report[key])}")
        lines.append(
            f"scan failures: {report['consecutive_scan_failures']} consecutive, "
            f"{report['total_scan_failures']} total"
        )
        lines.append(
            f"attach failures: {report['consecutive_attach_failures']} consecutive, "
            f"{report['total_attach_failures']} total"
        )
    lines.append(
        f"retry queue: {report['retry_pending']} pending, {report['dead_letters']} dead letters"
    )
    by_type = report["errors_by_type"] or {}
    errors = ", ".join(f"{k} {v}" for k, v in sorted(by_type.items())) or "none"
    lines.append(f"errors by type: {errors}")
    if report["last_one_off_run"]:
        lines.append(
            f"last one-off run (watch --once, not the daemon): {report['last_one_off_run']}"
        )
    lines = [printable(line) for line in lines]
    status = printable(str(report["status"]))
    if colour and report["status"] in STATE_COLOURS:
        status = click.style(status, fg=STATE_COLOURS[report["status"]], bold=True)
    lines[0] += status
    return "\n".join(lines)
