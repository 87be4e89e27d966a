"""What `attach` and `run` share: options for limits and cgroups, and the governor set-up."""

from __future__ import annotations

import click

from ffrtmp import defaults


def cgroup_options(func):
    func = click.option(
        "--cgroup-version",
        type=click.Choice(["auto", "v1", "v2"]),
        default="auto",
        show_default=True,
        help="Which cgroup hierarchy to use; auto picks the one mounted.",
    )(func)
    func = click.option(
        "--cgroup-parent", metavar="PATH", help="Default: ffrtmp below this command's own cgroup."
    )(func)
    func = click.option(
        "--cgroup-root",
        type=click.Path(file_okay=False),
        default=str(defaults.CGROUP_ROOT),
        show_default=True,
        help="Where the cgroup filesystem is mounted.",
    )(func)
    return func


def limits_from(cpu_quota, cpu_weight, memory_limit):
    from ffrtmp.config import ConfigError, overridden
    from ffrtmp.limits import Limits

    given = {"cpu_quota": cpu_quota, "cpu_weight": cpu_weight, "memory_limit": memory_limit}
    try:
        return overridden(Limits(), {k: v for k, v in given.items() if v is not None})
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def ready_governor(cgroup_root, cgroup_parent, cgroup_version):
    """A governor that can write cgroups, or one clear sentence and exit 1."""
    from ffrtmp.cgroups import create_governor

    version = {"v1": 1, "v2": 2}.get(cgroup_version)
    # A parent made here gets the default weight; one that exists keeps the daemon's.
    governor = create_governor(
        root=cgroup_root,
        parent=cgroup_parent,
        version=version,
        parent_cpu_weight=defaults.CGROUP_PARENT_CPU_WEIGHT,
        keep_parent_weight=True,
    )
    problem = governor.check()
    if problem is not None:
        raise click.ClickException(f"cannot apply limits: {problem}")
    return governor


def job_id_from_flag(given: str | None, prefix: str, command: str, identity) -> str:
    """The job id, which is also the cgroup's name. An operator's --job-id is kept when it
    is one ffrtmp could have generated, else prefixed so ffrtmp's ownership rule holds."""
    from ffrtmp.cgroups import job_id_for, job_id_named

    if given is None:
        return job_id_for(prefix, command, identity)
    named = job_id_named(prefix, given)
    if named is None:
        raise click.BadParameter(f"{given!r} cannot name a cgroup", param_hint="--job-id")
    return named
