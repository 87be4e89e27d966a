"""What each command declares it does on the fleet's central database (ffrtmp.cli.on_central),
as the command line acts on it. The refusals come before any connection, so these run without a
PostgreSQL server: the URL points at a port nothing listens on (a command that is not refused
tries it and fails to connect, which tells it apart from a refusal). tests/fleet/test_fleet_reads.py
runs the reads themselves on a real server.
"""

from __future__ import annotations

import socket

import click
import pytest
from click.testing import CliRunner

from ffrtmp.cli import SUBCOMMANDS, main, on_central


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def central_url() -> str:
    return f"postgresql+psycopg://nobody@127.0.0.1:{closed_port()}/ffrtmp?connect_timeout=2"


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def leaf_commands() -> dict[str, click.Command]:
    """Every command of the command line by its full name ("processes list")."""
    ctx = click.Context(main)
    found: dict[str, click.Command] = {}

    def walk(prefix: str, command: click.Command) -> None:
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                walk(f"{prefix} {name}".strip(), command.get_command(ctx, name))
        else:
            found[prefix] = command

    walk("", main)
    return found


# The declarations as an operator meets them. Every command with --node for a read is here.
EXPECTED = {
    "processes list": on_central.EVERY_NODE,
    "errors list": on_central.EVERY_NODE,
    "errors stats": on_central.EVERY_NODE,
    "retries list": on_central.EVERY_NODE,
    "scans list": on_central.EVERY_NODE,
    "sql": on_central.CENTRAL_TABLES,
    "fleet status": on_central.EVERY_NODE,
    "processes show": on_central.REFUSED,
    "retries show": on_central.REFUSED,
    "health": on_central.REFUSED,
    "events": on_central.REFUSED,
    "top": on_central.REFUSED,
}


def test_every_reading_command_declares_what_it_does_on_the_central_database() -> None:
    commands = leaf_commands()
    assert set(SUBCOMMANDS) <= {name.split()[0] for name in commands}
    declared = {
        name: getattr(command.callback, on_central.DECLARATION).without_node
        for name, command in commands.items()
        if hasattr(command.callback, on_central.DECLARATION)
    }
    assert declared == EXPECTED
    # --node for reading comes with the declaration, and only with it (`retries requeue` and
    # `discard` have their own, the node to act on).
    reading_node = {
        name
        for name, command in commands.items()
        for param in command.params
        if param.name == "node" and not param.expose_value
    }
    assert reading_node == set(EXPECTED) - {"top", "fleet status"}


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["top", "--once"], "top reads the jobs' cgroups on this machine"),
        (["health"], "health is one node's: give --node"),
        (["events"], "events are one node's: give --node"),
        (["processes", "show", "1"], "give --node: ids are each node's own"),
        (["retries", "show", "1"], "give --node: ids are each node's own"),
    ],
)
def test_a_command_refused_on_the_central_database_says_why_before_connecting(
    central_url: str, args: list[str], sentence: str
) -> None:
    result = run(*args, "--db", central_url)
    assert result.exit_code == 2, result.output
    assert sentence in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["processes", "list"],
        ["errors", "stats"],
        ["scans", "list"],
        ["sql", "SELECT 1"],
        ["health", "--node", "edge-1"],
        ["processes", "show", "1", "--node", "edge-1"],
    ],
)
def test_a_command_allowed_on_the_central_database_goes_on_to_connect(
    central_url: str, args: list[str]
) -> None:
    """Not refused: it tries the server, and fails with the database's one sentence (no usage
    error, which says "Try 'ffrtmp ... -h'")."""
    pytest.importorskip("psycopg")
    result = run(*args, "--db", central_url)
    assert result.exit_code != 0, result.output
    assert "127.0.0.1" in result.output
    assert "Try '" not in result.output


def test_node_on_a_nodes_own_database_is_a_usage_error(tmp_path) -> None:
    result = run("processes", "list", "--node", "edge-1", "--db", str(tmp_path / "ffrtmp.db"))
    assert result.exit_code == 2
    assert "--node is for a central (PostgreSQL) database" in result.output
