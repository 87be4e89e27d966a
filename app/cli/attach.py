"""`ffrtmp attach --pid N`: govern one running process by hand."""

from __future__ import annotations

import json
import os

import click

from ffrtmp.cli.connect import open_for_writing_or_fail
from ffrtmp.cli.governed import cgroup_options, job_id_from_flag, limits_from, ready_governor
from ffrtmp.cli.options import db_option, limit_options, load_failpoints_or_fail


@click.command()
@click.option("--pid", type=click.IntRange(min=1), required=True, help="The process to govern.")
@click.option("--job-id", metavar="ID", help="Name of its job cgroup (default manual-CMD-PID-…).")
@limit_options
@click.option(
    "--nice",
    type=click.IntRange(-20, 19),
    help="Nice value for the process, every thread of it (as `run --nice`).",
)
@cgroup_options
@click.option(
    "--force",
    is_flag=True,
    help="Govern it even if it is no target command or belongs to another service.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@db_option
def attach(
    pid,
    job_id,
    cpu_quota,
    cpu_weight,
    memory_limit,
    nice,
    cgroup_root,
    cgroup_parent,
    cgroup_version,
    force,
    as_json,
    db,
) -> None:
    """Put one running process under limits now, and record it like the daemon does.

    A running `ffrtmp watch` on the same database follows it to its exit; `ffrtmp release`
    undoes it. Refused always: pid 1, kernel threads, ffrtmp itself and its ancestors, the
    daemon. Refused unless --force: a process that is not a target command, or that sits
    in another systemd service's cgroup. A process the daemon recorded but skipped (a
    filter) can be attached. --nice is set before anything is recorded: a nice value that
    cannot be set (lowering it takes root) stops the command with nothing changed.

    Example: ffrtmp attach --pid 4242 --cpu-quota 150 --memory-limit 2048 --nice 5
    """
    from ffrtmp import defaults
    from ffrtmp.attach import Attacher
    from ffrtmp.attach_safety import AttachRefused, check_never, check_unless_forced
    from ffrtmp.backoff import BackoffPolicy
    from ffrtmp.clock import system_now
    from ffrtmp.scanner import Scanner
    from ffrtmp.states import ProcessState
    from ffrtmp.store import Store
    from ffrtmp.utctime import utc

    limits = limits_from(cpu_quota, cpu_weight, memory_limit)
    load_failpoints_or_fail()
    try:
        check_never(pid, daemon_pid=_daemon_pid(db))
        candidate = Scanner([], self_pid=os.getpid()).inspect(pid, require_match=False)
        if candidate is None:
            raise click.ClickException(f"no process with pid {pid} that ffrtmp may govern")
        if not force:
            check_unless_forced(pid, candidate.command)
    except AttachRefused as exc:
        raise click.ClickException(str(exc)) from None
    governor = ready_governor(cgroup_root, cgroup_parent, cgroup_version)
    if nice is not None:
        from ffrtmp.niceness import NiceError, set_nice

        try:
            set_nice(candidate.identity, nice)
        except NiceError as exc:
            raise click.ClickException(str(exc)) from None
    store = Store(open_for_writing_or_fail(db))
    now = system_now()
    job_id = job_id_from_flag(job_id, "manual", candidate.command, candidate.identity)
    process_id, is_new = store.register(candidate, job_id=job_id, limits=limits, now=utc(now.wall))
    if not is_new and not store.take_over(
        process_id, job_id=job_id, limits=limits, now=utc(now.wall), by="operator"
    ):
        store.close()
        raise click.ClickException(
            f"pid {pid} is already recorded as process {process_id}; "
            f"see `ffrtmp processes show {process_id}`"
        )
    attacher = Attacher(
        store,
        governor,
        BackoffPolicy(max_attempts=defaults.RETRY_MAX_ATTEMPTS),
        retry_enabled=False,
    )
    result = attacher.attach(process_id, candidate.identity, job_id, limits, now=now)
    store.close()
    summary = {
        "process_id": process_id,
        "pid": pid,
        "job_id": job_id,
        "state": str(result.state),
        "cgroups": list(result.cgroup_paths),
        "limits": limits.as_dict(),
        "nice": nice,
        "error": result.error,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    if result.state != ProcessState.ATTACHED:
        raise click.ClickException(f"pid {pid} was not attached: {result.error}")
    if not as_json:
        click.echo(f"attached pid {pid} as {job_id} ({', '.join(result.cgroup_paths)})")


def _daemon_pid(db: str | None) -> int | None:
    """The pid of the daemon running on the database, if one does (it is never governed)."""
    from ffrtmp.daemon_lock import running_daemon
    from ffrtmp.database import resolve

    path = resolve(db).path
    try:
        holder = running_daemon(path) if path is not None else None
    except OSError:
        return None
    return holder.pid if holder is not None else None
