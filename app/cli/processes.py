"""`ffrtmp processes`: the process instances the daemon has recorded."""

from __future__ import annotations

import click

from ffrtmp import defaults
from ffrtmp.cli.connect import reading
from ffrtmp.cli.options import db_option, output_options
from ffrtmp.cli.params import limit_option, repeatable_choice_option, since_option
from ffrtmp.fleet.hooks import read_node_option
from ffrtmp.states import ProcessState


@click.group()
def processes() -> None:
    """The processes found, governed and followed, newest first.

    Example: ffrtmp processes list --state attached --since 1h
    """


@processes.command("list")
@db_option
@read_node_option
@repeatable_choice_option(
    "--state", "states", ProcessState, "Only processes in this state (repeatable)."
)
@since_option
@click.option("--command", metavar="NAME", help="Only this command, e.g. ffmpeg.")
@limit_option(defaults.CLI_LIST_LIMIT)
@output_options
def list_(db, states, since, command, limit, as_json, as_csv) -> None:
    """List recorded processes, the most recently discovered first.

    Example: ffrtmp processes list --state dead --state retrying --json
    """
    from ffrtmp import queries
    from ffrtmp.cli.output import emit

    with reading(db) as conn:
        rows = queries.list_processes(
            conn, states=states, since=since, command=command, limit=limit
        )
    emit(rows, queries.PROCESS_COLUMNS, as_json=as_json, as_csv=as_csv, empty="no processes")


@processes.command()
@db_option
@read_node_option
@click.argument("process_id", metavar="ID", type=int, required=False)
@click.option("--pid", type=int, help="The newest process recorded with this pid.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def show(db, process_id, pid, as_json) -> None:
    """Show one process (by its row ID, or the newest with --pid), its retry item and its
    event trail.

    Example: ffrtmp processes show --pid 4242
    """
    if (process_id is None) == (pid is None):
        raise click.UsageError("give either a process ID or --pid")
    from ffrtmp import queries
    from ffrtmp.cli.records import print_record

    with reading(db) as conn:
        if pid is not None:
            process = queries.newest_process_for_pid(conn, pid)
            if process is None:
                raise click.ClickException(f"no process with pid {pid} is recorded")
        else:
            process = queries.get_process(conn, process_id)
            if process is None:
                raise click.ClickException(f"process {process_id} does not exist")
        retry = queries.retry_for_process(conn, process["id"])
        events = queries.events_of_process(conn, process["id"])
    print_record({"process": process, "retry_item": retry, "events": events}, as_json=as_json)
