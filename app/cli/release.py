"""`ffrtmp release --pid N | --job ID`: undo an attach by hand."""

from __future__ import annotations

import click

from ffrtmp.cli.connect import existing_store
from ffrtmp.cli.governed import cgroup_options, ready_governor
from ffrtmp.cli.options import db_option


@click.command()
@click.option("--pid", type=click.IntRange(min=1), help="The governed process to release.")
@click.option("--job", "job_id", metavar="ID", help="The job whose process to release.")
@cgroup_options
@db_option
def release(pid, job_id, cgroup_root, cgroup_parent, cgroup_version, db) -> None:
    """Move a governed process out of its job cgroup, back to the cgroups it came from (or,
    when those are gone, to its parent process's), remove the job cgroup, and stop following
    it. Recorded as a `released` event; the daemon lets go of it at its next scan and does
    not govern it again (`ffrtmp attach` can).

    Example: ffrtmp release --pid 4242    or    ffrtmp release --job auto-ffmpeg-4242-123456
    """
    if (pid is None) == (job_id is None):
        raise click.UsageError("give either --pid or --job")
    import os
    from datetime import UTC, datetime

    from ffrtmp.cgroups.errors import GovernorError
    from ffrtmp.identity import current_identity

    what = f"pid {pid}" if pid is not None else f"job {job_id}"
    with existing_store(db) as store:
        rows = store.governed(pid=pid, job_id=job_id)
        row = next((r for r in rows if current_identity(r.identity.pid) == r.identity), None)
        if row is None:
            raise click.ClickException(f"{what} is not a running process that ffrtmp governs")
        governor = ready_governor(cgroup_root, cgroup_parent, cgroup_version)
        try:
            went = governor.move_out(row.identity, row.job_id, row.origin_cgroups)
        except GovernorError as exc:
            raise click.ClickException(f"{what} could not be moved back: {exc}") from None
        store.record_released(row.process_id, moved_to=went, now=datetime.now(UTC), by="operator")
        try:
            # As recorded at its attach, whatever --cgroup-parent this command got.
            removed = governor.release(row.job_id, recorded=row.cgroup_paths)
        except GovernorError as exc:
            reason = os.strerror(exc.errno)
            raise click.ClickException(f"job cgroup {exc.filename} not removed: {reason}") from None
    places = ", ".join(f"{name} {path}" for name, path in went.items())
    click.echo(f"released pid {row.identity.pid} from {row.job_id}: back in {places}")
    if not removed:
        click.echo(f"job cgroup {row.job_id} still holds other processes; left in place", err=True)
