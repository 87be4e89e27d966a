"""`ffrtmp config`: check a watch config file before the daemon reads it."""

from __future__ import annotations

import json
from pathlib import Path

import click
import yaml

from ffrtmp.config import ConfigError, effective_dict, load_config


class InvalidConfig(click.ClickException):
    """A config file that cannot be used: "Error: <one sentence>" and exit status 2, the status
    of a usage error, so scripts can tell a bad file from a command that failed."""

    exit_code = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def config() -> None:
    """Check watch configuration files.

    Example: ffrtmp config check /etc/ffrtmp/watch.yaml
    """


@config.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the configuration as JSON.")
def check(file: Path, as_json: bool) -> None:
    """Validate FILE and print the configuration it gives, every default filled in.

    The printed YAML is itself a valid config file. A bad file prints one sentence naming
    the line and the key, and exits with status 2.

    Example: ffrtmp config check /etc/ffrtmp/watch.yaml
    """
    try:
        effective = effective_dict(load_config(file))
    except ConfigError as exc:
        raise InvalidConfig(str(exc)) from None
    if as_json:
        click.echo(json.dumps(effective, indent=2))
        return
    click.echo(f"# {file} is valid; the effective configuration, with defaults filled in:")
    click.echo(yaml.safe_dump(effective, sort_keys=False, default_flow_style=False), nl=False)
