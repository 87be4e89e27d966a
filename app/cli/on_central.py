"""What each command does when --db names the fleet's central (PostgreSQL) database, declared
on the command itself:

    @processes.command("list")
    @db_option
    @on_central.every_node
    def list_(...): ...

ffrtmp.cli.connect reads the declaration when the command opens the database (`reading(db)`);
no code elsewhere tests a command's name. A declaration that takes --node adds the option and
keeps its value out of the command's arguments. Only click is imported here (and typing,
which click imports), as every read command loads this module.
"""

from __future__ import annotations

from typing import NamedTuple

import click

# Without --node, a command on the central database reads...
EVERY_NODE = "every node"  # each statement once per node; every row gains a NODE column
CENTRAL_TABLES = "central tables"  # the central tables themselves, node_id and all
REFUSED = "refused"  # nothing: `refusal` says why (and with --node, the node's rows)

DECLARATION = "ffrtmp_on_central"
NODE_META_KEY = "ffrtmp_fleet_node"


class CentralUse(NamedTuple):
    without_node: str  # EVERY_NODE, CENTRAL_TABLES or REFUSED
    refusal: str = ""  # the usage error when refused
    takes_node: bool = True  # has --node: the rows of that node only, as it has them


# A command that declares nothing and opens the database through `reading`: the central tables
# themselves (`db check` reads a node's database only; the central one has its own check).
UNDECLARED = CentralUse(CENTRAL_TABLES, takes_node=False)


def _remember_node(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    ctx.meta[NODE_META_KEY] = value


# The value is kept in the click context, not passed to the command: a command only gains the
# declaration.
_node_option = click.option(
    "--node",
    metavar="ID|LABEL",
    expose_value=False,
    callback=_remember_node,
    help="On a central (PostgreSQL) database: only this node's rows (default: all, with a "
    "NODE column).",
)


def declare(use: CentralUse):
    """The decorator that declares `use` on a command's function (below its @command)."""

    def decorate(func):
        setattr(func, DECLARATION, use)
        if use.takes_node:
            func = _node_option(func)
        return func

    return decorate


every_node = declare(CentralUse(EVERY_NODE))
central_tables = declare(CentralUse(CENTRAL_TABLES))
# Every node's rows, each judged on its own (`fleet status`): no --node, it is about them all.
every_node_only = declare(CentralUse(EVERY_NODE, takes_node=False))


def one_node(refusal: str):
    """A command whose rows mean something for one node only: refused without --node."""
    return declare(CentralUse(REFUSED, refusal))


def refused(refusal: str):
    """A command that has nothing to read on the central database."""
    return declare(CentralUse(REFUSED, refusal, takes_node=False))


# `show ID`: each node numbers its own rows.
SHOW_NEEDS_NODE = "on a central database, give --node: ids are each node's own"


def declared_use(ctx: click.Context | None) -> CentralUse:
    """What the running command declared (UNDECLARED outside a command, or when it did not)."""
    if ctx is None:
        return UNDECLARED
    # On the function when declared below @command (the usual place), on the command above it.
    found = getattr(ctx.command, DECLARATION, None) or getattr(
        ctx.command.callback, DECLARATION, None
    )
    return found or UNDECLARED


def chosen_node(ctx: click.Context | None) -> str | None:
    """The --node given to the running command, if any."""
    return ctx.meta.get(NODE_META_KEY) if ctx is not None else None
