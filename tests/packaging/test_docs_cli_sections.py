"""docs/cli.md is the operator's reference of every command: each command of the click tree has
a section there, and a command's sections sit in one chapter (not one synopsis here and
another, with other options, further down)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ffrtmp.cli import main

CLI_MD = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def _commands() -> list[str]:
    """Every command that runs something (the leaves of the tree), as `ffrtmp a b`."""
    found = []

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        if isinstance(command, click.Group):
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), (*path, name))
        else:
            found.append(" ".join(("ffrtmp", *path)))

    walk(main, ())
    return found


def _sections() -> dict[str, set[str]]:
    """For each command a heading shows in backticks, the chapters (## headings) it is in."""
    chapters: dict[str, set[str]] = {}
    chapter = ""
    known = _commands()
    for line in CLI_MD.read_text().splitlines():
        heading = re.match(r"^(#+) (.*)$", line)
        if not heading:
            continue
        if len(heading.group(1)) == 2:
            chapter = heading.group(2)
        for span in re.findall(r"`(ffrtmp [^`]*)`", heading.group(2)):
            words = span.split()
            # The longest command the span starts with: `ffrtmp db prune --dry-run` is db prune.
            for n in range(len(words), 1, -1):
                if " ".join(words[:n]) in known:
                    chapters.setdefault(" ".join(words[:n]), set()).add(chapter)
                    break
    return chapters


def test_every_command_has_a_section():
    missing = [command for command in _commands() if command not in _sections()]
    assert not missing, f"docs/cli.md has no section for {', '.join(missing)}"


def test_a_command_is_described_in_one_chapter():
    scattered = {c: sorted(where) for c, where in _sections().items() if len(where) > 1}
    assert not scattered, f"docs/cli.md describes these in several chapters: {scattered}"


def test_the_tree_is_read_whole():
    commands = _commands()
    assert {"ffrtmp watch", "ffrtmp db upgrade", "ffrtmp retries requeue"} <= set(commands)
    assert "ffrtmp db" not in commands  # a group is no section of its own
