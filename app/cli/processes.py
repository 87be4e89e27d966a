"""`ffrtmp processes`: the process instances the daemon has recorded."""

from __future__ import annotations

import click

from ffrtmp import defaults
from ffrtmp.cli import on_central
from ffrtmp.cli.connect import reading
from ffrtmp.cli.listings import PROCESSES
from ffrtmp.cli.options import db_option, output_options
from ffrtmp.cli.params import SIGNAL, limit_option, repeatable_choice_option, since_option
from ffrtmp.cli.table import columns_option
from ffrtmp.states import ProcessState


@click.group()
def processes() -> None:
    """The processes found, governed and followed, newest first.

    Example: ffrtmp processes list --state attached --since 1h
    """


@processes.command("list")
@db_option
@on_central.every_node
@repeatable_choice_option(
    "--state", "states", ProcessState, "Only processes in this state (repeatable)."
)
@since_option
@click.option("--command", metavar="NAME", help="Only this command, e.g. ffmpeg.")
@click.option("--oom", is_flag=True, help="Only processes the kernel's OOM killer ended.")
@click.option("--exit-code", type=click.IntRange(0, 255), metavar="N", help="Only this exit code.")
@click.option("--signal", "exit_signal", type=SIGNAL, help="Only those killed by it: KILL, 9.")
@limit_option(defaults.CLI_LIST_LIMIT)
@columns_option(PROCESSES)
@output_options
def list_(
    db, states, since, command, oom, exit_code, exit_signal, limit, columns, as_json, as_csv
) -> None:
    """List recorded processes, the most recently discovered first.

    Example: ffrtmp processes list --oom --command ffmpeg --since 1h
    """
    from ffrtmp import queries
    from ffrtmp.cli.table import emit_listing

    with reading(db) as conn:
        rows = queries.list_processes(
            conn,
            states=states,
            since=since,
            command=command,
            oom=oom,
            exit_code=exit_code,
            exit_signal=exit_signal,
            limit=limit,
        )
    emit_listing(
        rows, PROCESSES, columns=columns, as_json=as_json, as_csv=as_csv, empty="no processes"
    )


@processes.command()
@db_option
@on_central.one_node(on_central.SHOW_NEEDS_NODE)
@click.argument("process", metavar="ID|JOB_ID", required=False)
@click.option("--pid", type=int, help="The newest process recorded with this pid.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def show(db, process, pid, as_json) -> None:
    """Show one process (by its row ID, its job id, or the newest with --pid), its memory
    figures each with what it counts, its retry item and its event trail. Values are whole
    here; sizes and times carry their units.

    Example: ffrtmp processes show auto-ffmpeg-4242-918273    or    ffrtmp processes show --pid 4242
    """
    if (process is None) == (pid is None):
        raise click.UsageError("give either a process ID, a job id or --pid")
    from ffrtmp import queries
    from ffrtmp.cli.records import print_record

    with reading(db) as conn:
        if pid is not None:
            found = queries.newest_process_for_pid(conn, pid)
            if found is None:
                raise click.ClickException(f"no process with pid {pid} is recorded")
        elif process.isdigit():
            found = queries.get_process(conn, int(process))
            if found is None:
                raise click.ClickException(f"process {process} does not exist")
        else:
            found = queries.newest_process_for_job(conn, process)
            if found is None:
                from ffrtmp.printable import printable

                raise click.ClickException(f"no process with job id '{printable(process)}'")
        retry = queries.retry_for_process(conn, found["id"])
        events = queries.events_of_process(conn, found["id"])
    from ffrtmp.process_memory import memory_account

    sections = {"process": found, "memory": memory_account(found)}
    print_record(sections | {"retry_item": retry, "events": events}, as_json=as_json)
