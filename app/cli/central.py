"""The commands' side of the fleet's central (PostgreSQL) database where they act on it:
`db upgrade / current / check` on its schema, `retries requeue / discard` recorded for the
owning node. Each returns False on a node's own database, for the command to go on there.
Reading it is ffrtmp.cli.connect's (`reading`), as each command declares (ffrtmp.cli.on_central).
"""

from __future__ import annotations

import click

from ffrtmp.cli.connect import refusal_as_one_sentence
from ffrtmp.cli.options import on_command_line
from ffrtmp.fleet.urls import is_central

node_option = click.option(
    "--node",
    metavar="ID|LABEL",
    help="On a central (PostgreSQL) database: only this node's rows, or the node to act on.",
)


def central_upgrade_or_none(db: str | None) -> bool:
    """`ffrtmp db upgrade` on a PostgreSQL URL: the central schema; False for a node's db."""
    if not is_central(db):
        return False
    from ffrtmp.fleet import central

    with refusal_as_one_sentence():
        revision = central.upgrade(db, on_command_line=on_command_line(db))
    click.echo(f"{central.hidden(db)}: fleet schema at revision {revision}")
    return True


def central_action(db: str | None, action: str, retry_id: int | None, node: str | None) -> bool:
    """`retries requeue/discard` on the central database: recorded for the owning node, which
    applies it when its shipper next calls; False on a node's own database."""
    if not is_central(db):
        if node:
            raise click.UsageError("--node is for a central (PostgreSQL) database")
        return False
    if retry_id is None:
        raise click.UsageError("on the central database, give a retry item ID and --node")
    if not node:
        raise click.UsageError("on the central database, --node names the node that owns the item")
    from ffrtmp.fleet import actions, central
    from ffrtmp.fleet.reads import UnknownNode

    with refusal_as_one_sentence():
        engine = central.open_central(db, on_command_line=on_command_line(db))
    try:
        action_id = actions.request(engine, node, action, retry_id)
    except UnknownNode as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(
        f"{action} of retry item {retry_id} recorded as action {action_id} for node {node}; "
        "it is applied when the node next ships"
    )
    return True


def central_current_or_none(db: str | None) -> bool:
    """`ffrtmp db current` on a PostgreSQL URL: the central schema's revision."""
    if not is_central(db):
        return False
    from ffrtmp.fleet import central

    with refusal_as_one_sentence():
        url = central.parse(db, on_command_line=on_command_line(db))
        engine = central.make_central_engine(url)
        try:
            revision = central.stored_revision(engine, url)
        finally:
            engine.dispose()
    head = central.head_revision()
    click.echo(f"{revision or 'none'} ({'head' if revision == head else f'head is {head}'})")
    return True


def central_check_or_none(db: str | None) -> bool:
    """`ffrtmp db check` on a PostgreSQL URL: the central schema at this version's head and
    matching its definition (the server checks its own pages); False for a node's database."""
    if not is_central(db):
        return False
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from ffrtmp.fleet import central
    from ffrtmp.fleet.central_schema import metadata

    with refusal_as_one_sentence():
        engine = central.open_central(db, on_command_line=on_command_line(db))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    if diff:
        raise click.ClickException(
            f"the central database differs from the fleet schema definition: {diff}"
        )
    click.echo(f"ok: fleet schema at revision {central.head_revision()}")
    return True
