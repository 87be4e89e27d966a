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
    """Check watch configuration files, and rewrite the original daemon's.

    Example: ffrtmp config check /etc/ffrtmp/watch.yaml
    """


def _load_or_fail(file: Path):
    try:
        return load_config(file)
    except ConfigError as exc:
        raise InvalidConfig(str(exc)) from None


@config.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the configuration as JSON.")
def check(file: Path, as_json: bool) -> None:
    """Validate FILE and print the configuration it gives, every default filled in.

    The printed YAML is itself a valid config file; it lists every command's whole limits
    and filters (its own keys merged over the global ones). A bad file prints one sentence
    naming the line and the key, and exits with status 2. A key spelt the original daemon's
    way prints a warning on stderr naming the key to write instead (`ffrtmp config migrate`).

    Example: ffrtmp config check /etc/ffrtmp/watch.yaml
    """
    loaded = _load_or_fail(file)
    for line in loaded.warnings():
        click.echo(f"warning: {line}", err=True)
    effective = effective_dict(loaded)
    if as_json:
        click.echo(json.dumps(effective, indent=2))
        return
    click.echo(f"# {file} is valid; the effective configuration, with defaults filled in:")
    click.echo(yaml.safe_dump(effective, sort_keys=False, default_flow_style=False), nl=False)


@config.command()
@click.argument("file", type=click.Path(path_type=Path))
def migrate(file: Path) -> None:
    """Print FILE in ffrtmp's own form, for a file written for the original daemon.

    Every key FILE sets is kept with the value ffrtmp reads from it; the original's
    top-level spellings (cpu_quota, enable_retry, max_retry_attempts, ...) are written as the
    keys they meant, its state-file keys are dropped, and comments at the top say what
    changed meaning. The output passes `ffrtmp config check` and gives the same effective
    configuration as FILE. A file ffrtmp cannot read exits with status 2.

    Example: ffrtmp config migrate /etc/ffrtmp/watch-config.yaml > watch.yaml
    """
    from ffrtmp.config_migration import migrated_text

    try:
        text = migrated_text(file)
    except ConfigError as exc:
        raise InvalidConfig(str(exc)) from None
    click.echo(text, nl=False)
