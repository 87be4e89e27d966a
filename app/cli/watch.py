"""`ffrtmp watch`: the daemon."""

from __future__ import annotations

import sys

import click

from app import defaults
from app.cli.options import db_option, load_failpoints_or_fail
from app.cli.params import POSITIVE_DURATION


def limit_options(func):
    """--cpu-quota, --cpu-weight, --memory-limit: shared by watch, attach and run."""
    func = click.option(
        "--memory-limit", type=click.IntRange(min=1), metavar="MB",
        help="Memory limit in MB.",
    )(func)  # fmt: skip
    func = click.option(
        "--cpu-weight", type=click.IntRange(1, 10000), metavar="1-10000",
        help=f"CPU weight (default {defaults.CPU_WEIGHT}).",
    )(func)  # fmt: skip
    func = click.option(
        "--cpu-quota", type=click.FloatRange(min=0, min_open=True), metavar="PERCENT",
        help="CPU quota in percent of one core (150 = one and a half cores).",
    )(func)  # fmt: skip
    return func


@click.command()
@click.option("--watch-config", type=click.Path(dir_okay=False), metavar="FILE",
              help="YAML watch config; flags given here win over it.")  # fmt: skip
@click.option("--scan-interval", type=POSITIVE_DURATION,
              help=f"Full scan every DURATION (500ms, 10s, 1m30s; default "
                   f"{defaults.SCAN_INTERVAL_SECONDS:g}s).")  # fmt: skip
@click.option("--target", "targets", multiple=True, metavar="COMMAND",
              help="Target command name (repeatable); replaces the configured list.")  # fmt: skip
@limit_options
@click.option("--discovery", type=click.Choice(["events", "poll", "auto"]),
              help="events: the kernel's process events; poll: scans only; auto (default): "
                   "events when they work.")  # fmt: skip
@click.option("--enable-retry/--no-retry", "retry_enabled", default=None,
              help="Retry failed attaches with backoff (default on).")  # fmt: skip
@click.option("--max-retry-attempts", type=click.IntRange(min=1),
              help=f"Retries before a process is dead-lettered "
                   f"(default {defaults.RETRY_MAX_ATTEMPTS}).")  # fmt: skip
@click.option("--cgroup-root", type=click.Path(file_okay=False),
              help=f"Where cgroups are mounted (default {defaults.CGROUP_ROOT}).")  # fmt: skip
@click.option("--cgroup-parent", metavar="PATH",
              help="Cgroup for the job cgroups: relative to the daemon's own cgroup, or "
                   "absolute from the root (default: ffrtmp below the daemon's own).")  # fmt: skip
@click.option("--cgroup-version", type=click.Choice(["auto", "v1", "v2"]),
              help="Override the detected cgroup version.")  # fmt: skip
@click.option("--once", is_flag=True, help="One scan, attach what it finds, exit.")
@click.option("--http", "http_address", metavar="HOST:PORT",
              help=f"Serve /healthz and /metrics (e.g. {defaults.HTTP_ADDRESS}).")  # fmt: skip
@click.option("--log-format", type=click.Choice(["human", "json"]), default="human",
              show_default=True)  # fmt: skip
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)  # fmt: skip
@db_option
def watch(
    watch_config,
    scan_interval,
    targets,
    cpu_quota,
    cpu_weight,
    memory_limit,
    discovery,
    retry_enabled,
    max_retry_attempts,
    cgroup_root,
    cgroup_parent,
    cgroup_version,
    once,
    http_address,
    log_format,
    log_level,
    db,
) -> None:
    """Find transcoding processes, govern them, follow them to their end.

    Precedence: built-in defaults < --watch-config file < flags.

    Example: ffrtmp watch --watch-config /etc/ffrtmp/watch.yaml --http 127.0.0.1:9464
    """
    from app import logs
    from app.config import ConfigError, apply_overrides, effective_dict, load_config

    logs.setup(log_level, log_format)
    load_failpoints_or_fail()
    overrides = dict(
        scan_interval=scan_interval, target_commands=list(targets) or None,
        cpu_quota=cpu_quota, cpu_weight=cpu_weight, memory_limit=memory_limit,
        discovery=discovery, retry_enabled=retry_enabled,
        max_retry_attempts=max_retry_attempts, cgroup_root=cgroup_root,
        cgroup_parent=cgroup_parent, cgroup_version=cgroup_version,
    )  # fmt: skip
    try:
        config = apply_overrides(load_config(watch_config), **overrides)
    except (ConfigError, ValueError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)

    from app.service import StartupError, build_daemon

    try:
        daemon = build_daemon(config, db=db, once=once, http_address=http_address)
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None
    daemon.overrides = {k: v for k, v in overrides.items() if v is not None}
    import logging

    logging.getLogger("app.daemon").info("effective configuration: %s", effective_dict(config))
    daemon.install_signal_handlers()
    sys.exit(daemon.run())
