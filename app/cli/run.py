"""`ffrtmp run -- CMD ARGS`: start a command under limits, wait, record, pass its exit code on."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import click

from ffrtmp.cli.connect import open_for_writing_or_fail
from ffrtmp.cli.governed import cgroup_options, job_id_from_flag, limits_from, ready_governor
from ffrtmp.cli.options import db_option, limit_options, load_failpoints_or_fail


def _spawn_held(argv: list[str], nice: int | None) -> tuple[int, int]:
    """Fork a child that waits on a pipe before it execs, so its limits are in place before
    CMD runs a single instruction. Returns (pid, the pipe end that releases it)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            os.close(write_end)
            if os.read(read_end, 1) != b"g":
                os._exit(125)  # the parent gave up: never run CMD ungoverned
            os.close(read_end)
            if nice:
                os.nice(nice)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.execvp(argv[0], argv)
        except OSError as exc:
            os.write(2, f"ffrtmp run: cannot run {argv[0]}: {exc.strerror}\n".encode())
            os._exit(127)
        os._exit(127)
    os.close(read_end)
    return pid, write_end


@click.command(context_settings={"ignore_unknown_options": False})
@click.option("--job-id", metavar="ID", help="Name of the job cgroup (default run-CMD-PID-…).")
@limit_options
@click.option("--nice", type=click.IntRange(-20, 19), help="Nice value for CMD.")
@cgroup_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout at the end.")
@db_option
@click.argument("command", nargs=-1, required=True, metavar="-- CMD [ARGS]...")
def run(
    job_id,
    cpu_quota,
    cpu_weight,
    memory_limit,
    nice,
    cgroup_root,
    cgroup_parent,
    cgroup_version,
    as_json,
    db,
    command,
) -> None:
    """Start CMD under limits, wait for it, record it, and exit with its exit code
    (128+N when a signal N ended it).

    Example: ffrtmp run --cpu-quota 200 --memory-limit 4096 -- ffmpeg -i in.mp4 out.mkv
    """
    from ffrtmp.attach import Attacher
    from ffrtmp.backoff import BackoffPolicy
    from ffrtmp.candidate import Candidate
    from ffrtmp.clock import system_now
    from ffrtmp.exit_status import ExitInfo
    from ffrtmp.identity import current_identity
    from ffrtmp.lifecycle import Followed, Lifecycle
    from ffrtmp.states import ProcessState
    from ffrtmp.store import Store
    from ffrtmp.utctime import utc

    limits = limits_from(cpu_quota, cpu_weight, memory_limit)
    load_failpoints_or_fail()
    governor = ready_governor(cgroup_root, cgroup_parent, cgroup_version)
    store = Store(open_for_writing_or_fail(db))
    argv = list(command)
    pid, release = _spawn_held(argv, nice)
    started = system_now()
    identity = current_identity(pid)
    name = os.path.basename(argv[0])
    job_id = job_id_from_flag(job_id, "run", name, identity)
    candidate = Candidate(
        identity=identity,
        command=name,
        argv=tuple(argv),
        ppid=os.getpid(),
        rule="run",
        uid=os.getuid(),
        cwd=os.getcwd(),
    )
    process_id, _ = store.register(candidate, job_id=job_id, limits=limits, now=utc(started.wall))
    attacher = Attacher(store, governor, BackoffPolicy(), retry_enabled=False)
    result = attacher.attach(process_id, identity, job_id, limits, now=started)
    if result.state != ProcessState.ATTACHED:
        os.close(release)  # the child sees EOF and exits without running CMD
        os.waitpid(pid, 0)
        store.record_exit(
            process_id,
            now=utc(time.time()),
            exit_code=None,
            exit_signal=None,
            reason="not started: its limits could not be applied",
        )
        store.close()
        raise click.ClickException(f"{name} was not started: {result.error}")
    # While CMD runs, Ctrl-C belongs to it; we stay to record how it ended.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.write(release, b"g")
        os.close(release)
        _, status = os.waitpid(pid, 0)
    finally:
        signal.signal(signal.SIGINT, previous)
    info = ExitInfo.from_wait_status(status)
    lifecycle = Lifecycle(store, governor)
    lifecycle.finish(Followed(process_id, identity, job_id, governed=True), info, system_now())
    store.close()
    code = info.exit_code if info.exit_code is not None else 128 + (info.exit_signal or 0)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "process_id": process_id,
                    "pid": pid,
                    "job_id": job_id,
                    "cgroups": list(result.cgroup_paths),
                    "limits": limits.as_dict(),
                    "exit_code": info.exit_code,
                    "exit_signal": info.exit_signal,
                    "seconds": round(system_now().seconds_since(started), 3),
                },
                indent=2,
            )
        )
    sys.exit(code)
