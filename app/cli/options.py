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
