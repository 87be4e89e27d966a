"""Options shared by several commands, defined once."""

from __future__ import annotations

import os

import click

from ffrtmp import defaults

db_option = click.option(
    "--db",
    "db",
    envvar=defaults.DB_ENV_VAR,
    show_envvar=True,
    metavar="PATH|URL",
    help="Database file or SQLAlchemy URL (default: /var/lib/ffrtmp/ffrtmp.db for root, "
    "$XDG_STATE_HOME/ffrtmp/ffrtmp.db otherwise).",
)


def on_command_line(value: str | None, env_var: str = defaults.DB_ENV_VAR) -> bool:
    """Whether a URL was typed as a flag (visible in `ps`) rather than taken from the
    environment."""
    return value is not None and value != os.environ.get(env_var)


def output_options(func):
    """--json / --csv for commands that list rows; a table for people otherwise."""
    func = click.option("--csv", "as_csv", is_flag=True, help="Print CSV for scripts.")(func)
    func = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(func)
    return func


def load_failpoints_or_fail() -> None:
    """Arm FFRTMP_FAILPOINTS for a command that acts, or say what is wrong with it (exit 2)."""
    from ffrtmp import failpoints

    try:
        failpoints.configure()
    except failpoints.FailpointSpecError as exc:
        raise click.UsageError(str(exc)) from None


def setting_options(flags, *, from_environment: bool = False, aliases: bool = False):
    """One click option per (Flag, Setting) pair: the flags that override config settings,
    declared with the settings themselves (ffrtmp.settings). Values reach apply_overrides as
    given, so the settings' own checks judge them. `from_environment`: each flag can also be
    set by its FFRTMP_ variable, or else by the original daemon's name for it. `aliases`:
    the flags' other names are accepted too (`ship --batch-size`)."""

    def decorate(func):
        for flag, setting in reversed(flags):
            kind = setting.kind
            environment = {}
            if from_environment:
                names = [flag.envvar, *filter(None, [flag.original_envvar])]
                environment = {"envvar": names, "show_envvar": True}
            if "/" in flag.declaration:  # an on/off pair
                option = click.option(
                    flag.declaration, flag.param_name, default=None, help=flag.help, **environment
                )
            else:
                option = click.option(
                    flag.declaration,
                    *(flag.aliases if aliases else ()),
                    flag.param_name,
                    type=click.Choice(kind.choices) if kind.choices else None,
                    metavar=None if kind.choices else kind.describe,
                    multiple=kind.many,
                    help=flag.help,
                    **environment,
                )
            func = option(func)
        return func

    return decorate


def limit_options(func):
    """--cpu-quota, --cpu-weight, --memory-limit: shared by watch, attach and run."""
    from ffrtmp.config import flags
    from ffrtmp.limits import Limits

    return setting_options(flags(Limits))(func)


def ship_options(func):
    """--node-label, --ship-interval, --ship-batch-size (also --batch-size): the flags of the
    watch config's ship section, declared there (ffrtmp.config.ShipSettings), each also set
    by its FFRTMP_ variable (deploy/watch.env). `watch` has them as well."""
    from ffrtmp.config import ShipSettings, flags

    return setting_options(flags(ShipSettings), from_environment=True, aliases=True)(func)
