"""`ffrtmp watch`: the daemon."""

from __future__ import annotations

import os
import sys

import click

from ffrtmp import defaults
from ffrtmp.cli.options import (
    db_option,
    load_failpoints_or_fail,
    on_command_line,
    setting_options,
)


def watch_config_options(func):
    from ffrtmp.config import flags

    return setting_options(flags(), from_environment=True)(func)


def _environment(name: str, original: str | None = None) -> dict:
    """click's arguments that read a watch option from FFRTMP_<name> (or else `original`, the
    original daemon's variable)."""
    return {"envvar": [f"FFRTMP_{name}", *filter(None, [original])], "show_envvar": True}


# The parameters of the original daemon's state-file flags. ffrtmp's state is its database.
STATE_FLAG_PARAMS = frozenset({"enable_state", "state_path", "state_flush_interval"})


def state_flag_options(func):
    """The original's --enable-state, --state-path, --state-flush-interval: accepted so its
    unit's command line runs, and otherwise ignored."""
    ignored = "Accepted for the original daemon's unit and ignored: the state is the database."
    func = click.option(
        "--state-flush-interval",
        metavar="DURATION",
        help=ignored,
        **_environment("STATE_FLUSH_INTERVAL", "STATE_FLUSH_INTERVAL"),
    )(func)
    func = click.option(
        "--state-path", metavar="PATH", help=ignored, **_environment("STATE_PATH", "STATE_PATH")
    )(func)
    func = click.option(
        "--enable-state", is_flag=True, default=None, help=ignored, **_environment("ENABLE_STATE")
    )(func)
    return func


def _environment_name(ctx: click.Context, param: click.Parameter) -> str | None:
    """The environment variable `param` was read from, if it was."""
    if ctx.get_parameter_source(param.name) is not click.core.ParameterSource.ENVIRONMENT:
        return None
    names = param.envvar if isinstance(param.envvar, list) else [param.envvar]
    return next((name for name in names if os.environ.get(name)), None)


def _original_habits(ctx: click.Context, db: str | None) -> list[str]:
    """Warnings for the original daemon's ways that still work: its state flags, and its
    environment variable names."""
    found = []
    given = []
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if param.name in STATE_FLAG_PARAMS and source is not click.core.ParameterSource.DEFAULT:
            given.append(_environment_name(ctx, param) or param.opts[0])
    if given:
        database = db or defaults.default_db_path()
        found.append(
            f"{', '.join(given)}: ignored; the state lives in the SQLite database {database} "
            "now (--db), always: this can be dropped"
        )
    for param in ctx.command.params:
        name = _environment_name(ctx, param)
        if name and not name.startswith("FFRTMP_") and param.name not in STATE_FLAG_PARAMS:
            found.append(
                f"{name} is the original daemon's variable, read as {param.envvar[0]}: "
                f"set {param.envvar[0]} instead"
            )
    return found


def _warn_of_failpoints() -> None:
    """First thing, so errors they inject are never mistaken for real ones."""
    import logging

    from ffrtmp import failpoints

    for phrase in failpoints.armed():
        logging.getLogger("ffrtmp.daemon").warning(
            "failpoint armed (%s): %s; errors it injects are not real ones",
            failpoints.ENV_VAR,
            phrase,
        )


@click.command()
@click.option(
    "--watch-config",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="YAML watch config; flags given here win over it.",
    **_environment("WATCH_CONFIG", "WATCH_CONFIG"),
)
@watch_config_options
@state_flag_options
@click.option(
    "--once",
    is_flag=True,
    help="One scan, attach what it finds, exit.",
    **_environment("ONCE"),
)
@click.option(
    "--http",
    "http_address",
    metavar="HOST:PORT",
    help=f"Serve /healthz and /metrics (e.g. {defaults.HTTP_ADDRESS}, or unix:PATH for a "
    "unix socket); an address that cannot be bound is tried again with backoff while the "
    "daemon governs. A port below 1024 or a socket in a private folder cannot be taken "
    "first by an unprivileged user.",
    **_environment("HTTP"),
)
@click.option(
    "--log-format",
    type=click.Choice(["human", "json"]),
    default="human",
    show_default=True,
    **_environment("LOG_FORMAT"),
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="How much to log.  [default: info]",
    **_environment("LOG_LEVEL"),
)
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="Log warnings and errors only (warning).",
    **_environment("QUIET"),
)
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="Log everything, debug included (debug).",
    **_environment("VERBOSE"),
)
@click.option(
    "--ship-to",
    metavar="URL",
    help="Also ship the history to this central PostgreSQL database, in a thread of its own "
    "(docs/fleet.md); off by default, and not with --once (use `ffrtmp ship --once`). "
    "A password goes in a passfile or service file, never here.",
    **_environment("SHIP_TO"),
)
@db_option
@click.option(
    "--allow-unsafe-db",
    is_flag=True,
    help="Use a database file that is a symlink, owned by another user, or readable or "
    "writable by others (refused by default).",
    **_environment("ALLOW_UNSAFE_DB"),
)
@click.pass_context
def watch(
    ctx,
    watch_config,
    enable_state,
    state_path,
    state_flush_interval,
    once,
    http_address,
    log_format,
    log_level,
    quiet,
    verbose,
    db,
    allow_unsafe_db,
    ship_to,
    **overrides,
) -> None:
    """Find transcoding processes, govern them, follow them to their end.

    Precedence: built-in defaults < --watch-config file < FFRTMP_ environment variables <
    flags. Every flag can be set by the environment variable shown with it (see
    deploy/watch.env); a list variable is comma- or space-separated. The original daemon's
    flags and its variables SCAN_INTERVAL, TARGET_COMMANDS, MAX_RETRY_ATTEMPTS,
    STATE_FLUSH_INTERVAL, STATE_PATH and WATCH_CONFIG work too, each with a warning.

    Example: ffrtmp watch --watch-config /etc/ffrtmp/watch.yaml --http 127.0.0.1:9464
    """
    import logging

    from ffrtmp import logs
    from ffrtmp.config import ConfigError, apply_overrides, effective_dict, load_config

    chosen = [name for name, given in (("--log-level", log_level), ("--quiet", quiet),
              ("--verbose", verbose)) if given]  # fmt: skip
    if len(chosen) > 1:
        raise click.UsageError(f"choose one of {' and '.join(chosen)}")
    log_level = log_level or ("warning" if quiet else "debug" if verbose else "info")
    logs.setup(log_level, log_format)
    log = logging.getLogger("ffrtmp.daemon")
    load_failpoints_or_fail()
    _warn_of_failpoints()
    for line in _original_habits(ctx, db):
        log.warning("%s", line)
    try:
        loaded = load_config(watch_config)
        config = apply_overrides(loaded, **overrides)
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    for line in loaded.warnings():
        log.warning("%s", line)

    from ffrtmp.service import StartupError, build_daemon

    try:
        daemon = build_daemon(
            config,
            db=db,
            once=once,
            http_address=http_address,
            allow_unsafe_db=allow_unsafe_db,
            overrides=overrides,
        )
    except StartupError as exc:
        refusal = click.ClickException(str(exc))
        refusal.exit_code = exc.exit_code  # 2 when another daemon runs on the database
        raise refusal from None
    logs.log_configuration(log, effective_dict(config), log_format)
    daemon.install_signal_handlers()
    shipping = None
    if ship_to and not once:
        from ffrtmp.fleet.watching import start_shipping

        shipping = start_shipping(
            db,
            ship_to,
            config.ship,
            on_command_line=on_command_line(ship_to, "FFRTMP_SHIP_TO"),
        )
    try:
        code = daemon.run()
    finally:
        if shipping is not None:
            shipping.stop()
    sys.exit(code)
