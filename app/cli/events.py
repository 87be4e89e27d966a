"""`ffrtmp events`: process events and errors as they are written, like `journalctl -f`.

It reads the database, so it works from any shell on the node: the newest few first, then
(with --follow) every row written after them, found by increasing id. Each look is one short
read on a read-only connection: a WAL reader never blocks the daemon's writes.
"""

from __future__ import annotations

import json
import signal
import threading

import click

from ffrtmp import defaults
from ffrtmp.cli import on_central
from ffrtmp.cli.connect import reading
from ffrtmp.cli.options import db_option
from ffrtmp.cli.params import since_option

KIND_COLOURS = {
    "limits_applied": "green",
    "adopted": "green",
    "attach_failed": "yellow",
    "retry_scheduled": "yellow",
    "observed_without_limits": "yellow",
    "dead_lettered": "red",
    "oom_killed": "red",
}


@click.command()
@db_option
@on_central.one_node(
    "on a central database, events are one node's: give --node (each node numbers its own events)"
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events until Ctrl-C.")
@since_option
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=0),
    default=defaults.EVENTS_BACKLOG,
    show_default=True,
    help="Print this many of the newest events first.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, for scripts.")
def events(db, follow, since, limit, as_json) -> None:
    """Print process events (discovered, limits_applied, exited, oom_killed, ...) and errors,
    oldest first; with --follow, keep printing them as the daemon writes them. Ctrl-C stops.

    Example: ffrtmp events --follow    or    ffrtmp events --since today --limit 1000 --json
    """
    from sqlalchemy.exc import OperationalError

    from ffrtmp import queries

    stop = threading.Event()
    if follow:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
    write = _json_line if as_json else _human_line
    colour = False
    if not as_json:
        from ffrtmp.cli.table import use_colour

        colour = use_colour()
    try:
        with reading(db) as conn:
            cursor = queries.event_cursor(conn)
            if limit:
                for row in queries.recent_events(conn, cursor, since=since, limit=limit):
                    click.echo(write(row, colour), color=colour)
            conn.rollback()  # end the read: the writer's checkpoints may pass it
            while follow and not stop.wait(defaults.EVENTS_POLL_SECONDS):
                try:
                    rows = queries.events_after(conn, cursor, limit=defaults.EVENTS_POLL_BATCH)
                except OperationalError as exc:
                    if _passing(exc):
                        conn.rollback()
                        continue  # the next look will do
                    failure = f"reading {db or 'the database'} failed: {exc.orig}"
                    raise click.ClickException(failure) from None
                conn.rollback()
                for row in rows:
                    click.echo(write(row, colour), color=colour)
                cursor = queries.advance(cursor, rows)
    except BrokenPipeError:
        pass  # `ffrtmp events -f | head`: the reader has gone, so has the point of printing


def _passing(exc: Exception) -> bool:
    """SQLite busy or locked: a moment of the writer's (a checkpoint, a recovery), not a fault."""
    text = str(getattr(exc, "orig", exc)).lower()
    return "locked" in text or "busy" in text


def _json_line(row: dict, colour: bool) -> str:
    from ffrtmp.cli.formats import plain

    return json.dumps({k: plain(v) for k, v in row.items()})


def _human_line(row: dict, colour: bool) -> str:
    """`Nov 29 14:03:07 attached  pid 1234 auto-ffmpeg-1234-5678 (process 41) {...}`, or
    `Nov 29 14:03:08 error attach transient EAGAIN pid 1234: message`; escaped."""
    from ffrtmp.printable import printable

    when = row["occurred_at"].astimezone().strftime("%b %d %H:%M:%S")
    pid = "-" if row["pid"] is None else row["pid"]
    if row["source"] == "process":
        kind = row["kind"]
        details = "" if not row["details"] else " " + json.dumps(row["details"], ensure_ascii=False)
        text = f"pid {pid} {row['job_id']} (process {row['process_id']}){details}"
        style = KIND_COLOURS.get(kind)
    else:
        kind = "error"
        errno = f" {row['errno_name']}" if row["errno_name"] else ""
        text = f"{row['operation']} {row['error_type']}{errno} pid {pid}: {row['message']}"
        style = "red"
    label = click.style(kind, fg=style) if colour and style else kind
    return f"{when} {label} {printable(text)}"
