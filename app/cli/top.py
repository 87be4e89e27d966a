"""`ffrtmp top`: a live view of the running jobs, refreshed in place (ffrtmp.top reads them).

The screen is drawn with curses rather than hand-written ANSI sequences: curses enters and
leaves the alternate screen the way the terminal's terminfo says, reads keys without echo
and with a timeout, reports resizes, and `curses.wrapper` puts the terminal back as it was
on every way out, `q`, Ctrl-C or an exception.
"""

from __future__ import annotations

import json
import shutil
import sys
import time

import click

from ffrtmp.cli import on_central
from ffrtmp.cli.options import db_option
from ffrtmp.cli.params import DURATION

DEFAULT_INTERVAL = "2s"
FIRST_LOOK_SECONDS = 1.0  # CPU % needs two looks: the first figures come this soon
QUIT_KEYS = (ord("q"), ord("Q"))


@click.command()
@db_option
@on_central.refused(
    "top reads the jobs' cgroups on this machine: run it on the node; on the central "
    "database, `ffrtmp processes list --state attached` lists every node's running jobs"
)
@click.option(
    "--interval",
    type=DURATION,
    default=DEFAULT_INTERVAL,
    show_default=True,
    metavar="DURATION",
    help="Refresh every DURATION (500ms, 2s, 1m).",
)
@click.option(
    "--sort",
    "sort_key",
    type=click.Choice(["cpu", "memory", "throttled", "age", "pid", "job"]),
    default="cpu",
    show_default=True,
    help="Order of the jobs: the biggest figure first; age: the oldest first.",
)
@click.option("--once", is_flag=True, help="Print one screen and exit (for scripts).")
@click.option("--json", "as_json", is_flag=True, help="Print the jobs once as JSON and exit.")
def top(db, interval, sort_key, once, as_json) -> None:
    """Show the running jobs live, like systemd-cgtop: CPU % against the quota (percent of
    one core), memory against the limit, time held back by the quota, age and state.

    Reads the database and the jobs' cgroup files, never writes. Press q or Ctrl-C to quit.
    Without a terminal it prints one screen, as --once does.

    Example: ffrtmp top --sort memory --interval 5s
    """
    if interval < 0.1:
        raise click.BadParameter(
            f"must be at least 100ms, not {interval:g}s", param_hint="'--interval'"
        )
    from ffrtmp import queries
    from ffrtmp.cli.connect import reading
    from ffrtmp.top import Top, screen_lines, sorted_jobs

    with reading(db) as conn:

        def read_rows() -> list[dict]:
            try:
                return queries.running_processes(conn)
            finally:
                conn.rollback()  # end the read, so the next one sees what was written since

        view = Top(read_rows)
        if once or as_json or not sys.stdout.isatty():
            view.look()
            time.sleep(min(interval, FIRST_LOOK_SECONDS))
            jobs = sorted_jobs(view.look(), sort_key)
            if as_json:
                click.echo(json.dumps([job.as_json() for job in jobs], indent=2))
                return
            width = shutil.get_terminal_size((80, 24)).columns
            click.echo("\n".join(screen_lines(jobs, width, _title(jobs, interval, sort_key))))
            return
        import curses

        try:
            curses.wrapper(_live, view, interval, sort_key, screen_lines, sorted_jobs)
        except KeyboardInterrupt:
            pass  # Ctrl-C is a way to quit; curses.wrapper has restored the terminal


def _title(jobs, interval: float, sort_key: str, live: bool = False) -> str:
    governed = sum(1 for job in jobs if job.cpu_seconds is not None)
    clock = time.strftime("%H:%M:%S")
    text = f"ffrtmp top  {clock}  {len(jobs)} running, {governed} governed"
    text += f"  every {interval:g}s  sort: {sort_key}"
    return text + ("  q: quit" if live else "")


def _live(stdscr, view, interval, sort_key, screen_lines, sorted_jobs) -> None:
    import curses

    try:
        curses.curs_set(0)
    except curses.error:
        pass  # a terminal that cannot hide the cursor
    ellipsis_ok = _can_encode("…")
    view.look()
    next_look = time.monotonic() + min(interval, FIRST_LOOK_SECONDS)
    jobs, problem = [], None
    while True:
        height, width = stdscr.getmaxyx()
        width = max(1, width - 1)  # curses cannot write the last cell of the last line
        lines = screen_lines(jobs, width, _title(jobs, interval, sort_key, live=True))
        if problem:
            lines.insert(1, f"cannot read: {problem}"[:width])
        stdscr.erase()
        for row, line in enumerate(lines[:height]):
            if not ellipsis_ok:
                line = line.replace("…", "~")
            attribute = curses.A_REVERSE if row == (2 if problem else 1) else curses.A_NORMAL
            try:
                stdscr.addnstr(row, 0, line, width, attribute)
            except curses.error:
                pass  # the last cell of the screen cannot be written; nothing is lost
        stdscr.refresh()
        stdscr.timeout(max(0, int((next_look - time.monotonic()) * 1000)))
        key = stdscr.getch()
        if key in QUIT_KEYS:
            return
        if time.monotonic() < next_look:
            continue  # a resize or another key: redraw what we have
        try:
            jobs, problem = sorted_jobs(view.look(), sort_key), None
        except Exception as exc:  # the database away for a moment: say so, try again
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        next_look = time.monotonic() + interval


def _can_encode(text: str) -> bool:
    import locale

    try:
        text.encode(locale.getpreferredencoding(False))
    except (UnicodeEncodeError, LookupError):
        return False
    return True
