"""The `ffrtmp` command line: a thin layer that parses, calls the library and prints.

Subcommands live in their own modules and are imported only when run, so that a read
command does not pay for the daemon's imports (psutil, Alembic).
"""

from __future__ import annotations

import importlib

import click

from ffrtmp import __version__

# command name -> "module:attribute" of its click command or group
SUBCOMMANDS = {
    "watch": "ffrtmp.cli.watch:watch",
    "scan": "ffrtmp.cli.scan:scan",
    "attach": "ffrtmp.cli.attach:attach",
    "release": "ffrtmp.cli.release:release",
    "run": "ffrtmp.cli.run:run",
    "config": "ffrtmp.cli.config:config",
    "db": "ffrtmp.cli.db:db",
    "retries": "ffrtmp.cli.retries:retries",
    "health": "ffrtmp.cli.health:health",
    "processes": "ffrtmp.cli.processes:processes",
    "errors": "ffrtmp.cli.errors:errors",
    "scans": "ffrtmp.cli.scans:scans",
    "sql": "ffrtmp.cli.sql:sql",
    "ship": "ffrtmp.cli.ship:ship",
    "fleet": "ffrtmp.cli.fleet:fleet",
    "top": "ffrtmp.cli.top:top",
    "events": "ffrtmp.cli.events:events",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        """A mistyped command gets the nearest names: `ffrtmp retires` -> did you mean
        'retries'? (click suggests only among commands it has loaded, and these load lazily)."""
        name = args[0] if args else ""
        unknown = name and not name.startswith("-") and name not in SUBCOMMANDS
        if unknown and not ctx.resilient_parsing:
            from difflib import get_close_matches

            near = get_close_matches(name, SUBCOMMANDS, n=3)
            hint = f" Did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ffrtmp")
def main() -> None:
    """Find transcoding processes, govern them with cgroups, and record their lifecycle.

    Example: ffrtmp watch --watch-config /etc/ffrtmp/watch.yaml
    """
