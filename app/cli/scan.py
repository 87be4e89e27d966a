"""`ffrtmp scan`: a dry run of discovery and the filters."""

from __future__ import annotations

import sys

import click

from ffrtmp.cli.options import output_options


@click.command()
@click.option(
    "--watch-config",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="YAML watch config, as `watch` would read it.",
)
@click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="COMMAND",
    help="Target command instead of the config's (repeatable).",
)
@output_options
def scan(watch_config, targets, as_json, as_csv) -> None:
    """List the processes `watch` would attach now, with rule and limits, and those the
    filters leave out, with the reason. Changes nothing.

    Example: ffrtmp scan --watch-config /etc/ffrtmp/watch.yaml
    """
    import os

    from ffrtmp.cli.output import emit
    from ffrtmp.clock import seconds_since_boot
    from ffrtmp.config import ConfigError, apply_overrides, load_config
    from ffrtmp.scanner import Scanner

    try:
        config = apply_overrides(load_config(watch_config), target_commands=list(targets) or None)
    except (ConfigError, ValueError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    since_boot = seconds_since_boot()
    result = Scanner(config.rules(), self_pid=os.getpid()).scan()
    rows = []
    for c in sorted(result.matched, key=lambda c: c.pid):
        verdict = config.evaluate(c, since_boot)
        rows.append(
            {
                "pid": c.pid,
                "command": c.command,
                "rule": c.rule,
                "user": c.user,
                "decision": str(verdict.decision),
                "limits": config.limits_for(c.rule).describe() if verdict.attach else None,
                "reason": verdict.reason or None,
                "cmdline": " ".join(c.argv),
            }
        )
    emit(
        rows,
        ["pid", "command", "rule", "user", "decision", "limits", "reason", "cmdline"],
        as_json=as_json,
        as_csv=as_csv,
        empty=f"no matching process among {result.seen} (targets: "
        f"{', '.join(config.target_commands)})",
    )
