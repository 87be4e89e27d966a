"""`ffrtmp watch`: the daemon."""

from __future__ import annotations

import sys

import click

from ffrtmp import defaults
from ffrtmp.cli.options import db_option, load_failpoints_or_fail


def setting_options(flags):
    """One click option per (Flag, Setting) pair: the flags that override config settings,
    declared with the settings themselves (ffrtmp.settings). Values reach apply_overrides as
    given, so the settings' own checks judge them."""

    def decorate(func):
        for flag, setting in reversed(flags):
            kind = setting.kind
            if "/" in flag.declaration:  # an on/off pair
                option = click.option(
                    flag.declaration, flag.param_name, default=None, help=flag.help
                )
            else:
                option = click.option(
                    flag.declaration,
                    flag.param_name,
                    type=click.Choice(kind.choices) if kind.choices else None,
                    metavar=None if kind.choices else kind.describe,
                    multiple=kind.many,
                    help=flag.help,
                )
            func = option(func)
        return func

    return decorate


def limit_options(func):
    """--cpu-quota, --cpu-weight, --memory-limit: shared by watch, attach and run."""
    from ffrtmp.config import flags
    from ffrtmp.limits import Limits

    return setting_options(flags(Limits))(func)


def watch_config_options(func):
    from ffrtmp.config import flags

    return setting_options(flags())(func)


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
)
@watch_config_options
@click.option("--once", is_flag=True, help="One scan, attach what it finds, exit.")
@click.option(
    "--http",
    "http_address",
    metavar="HOST:PORT",
    help=f"Serve /healthz and /metrics (e.g. {defaults.HTTP_ADDRESS}).",
)
@click.option(
    "--log-format", type=click.Choice(["human", "json"]), default="human", show_default=True
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@db_option
def watch(watch_config, once, http_address, log_format, log_level, db, **overrides) -> None:
    """Find transcoding processes, govern them, follow them to their end.

    Precedence: built-in defaults < --watch-config file < flags.

    Example: ffrtmp watch --watch-config /etc/ffrtmp/watch.yaml --http 127.0.0.1:9464
    """
    from ffrtmp import logs
    from ffrtmp.config import ConfigError, apply_overrides, effective_dict, load_config

    logs.setup(log_level, log_format)
    load_failpoints_or_fail()
    _warn_of_failpoints()
    try:
        config = apply_overrides(load_config(watch_config), **overrides)
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)

    from ffrtmp.service import StartupError, build_daemon

    try:
        daemon = build_daemon(config, db=db, once=once, http_address=http_address)
    except StartupError as exc:
        refusal = click.ClickException(str(exc))
        refusal.exit_code = exc.exit_code  # 2 when another daemon runs on the database
        raise refusal from None
    daemon.overrides = overrides
    import logging

    logger = logging.getLogger("ffrtmp.daemon")
    logs.log_settings(logger, "effective configuration", effective_dict(config), log_format)
    daemon.install_signal_handlers()
    sys.exit(daemon.run())
