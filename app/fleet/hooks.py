"""The small hooks by which the shared commands (db, the read commands) reach the fleet code
when --db / FFRTMP_DB is a PostgreSQL URL; on any other database they do nothing."""

from __future__ import annotations

import os

import click

from ffrtmp import defaults


def is_central(db: str | None) -> bool:
    if not db or "://" not in str(db):
        return False
    return str(db).split("://", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def on_command_line(db: str | None, env_var: str = defaults.DB_ENV_VAR) -> bool:
    """Whether the URL was typed as a flag (visible in `ps`) rather than taken from the
    environment."""
    return db is not None and db != os.environ.get(env_var)


def central_upgrade_or_none(db: str | None) -> bool:
    """`ffrtmp db upgrade` on a PostgreSQL URL: the central schema; False for a node's db."""
    if not is_central(db):
        return False
    from ffrtmp.cli.connect import refusal_as_one_sentence
    from ffrtmp.fleet import central

    with refusal_as_one_sentence():
        revision = central.upgrade(db, on_command_line=on_command_line(db))
    click.echo(f"{central.hidden(db)}: fleet schema at revision {revision}")
    return True


node_option = click.option(
    "--node",
    metavar="ID|LABEL",
    help="On a central (PostgreSQL) database: only this node's rows, or the node to act on.",
)


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
    from ffrtmp.cli.connect import refusal_as_one_sentence
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


NODE_META_KEY = "ffrtmp_fleet_node"


def _remember_node(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    ctx.meta[NODE_META_KEY] = value
    ctx.meta[NODE_META_KEY + "_declared"] = True


# For the read commands: the value is kept in the click context, not passed to the command, so a
# command only gains this decorator.
read_node_option = click.option(
    "--node",
    metavar="ID|LABEL",
    expose_value=False,
    callback=_remember_node,
    help="On a central (PostgreSQL) database: only this node's rows (default: all, with a "
    "NODE column).",
)


def central_reading_or_none(db: str | None, exit_code: int):
    """The central read connection for a read command on a PostgreSQL URL, else None."""
    ctx = click.get_current_context(silent=True)
    meta = ctx.meta if ctx is not None else {}
    if not is_central(db):
        if meta.get(NODE_META_KEY):
            raise click.UsageError("--node is for a central (PostgreSQL) database")
        return None
    from ffrtmp.fleet.reads import central_reading

    # `sql` without --node reads the central tables themselves, node_id and all; with it, the
    # tables as that node has them.
    shadow = bool(meta.get(NODE_META_KEY + "_declared"))
    if ctx is not None and ctx.info_name == "sql" and not meta.get(NODE_META_KEY):
        shadow = False
    if ctx is not None and not meta.get(NODE_META_KEY):
        if ctx.info_name == "health":
            raise click.UsageError(
                "on a central database, health is one node's: give --node, or see every "
                "node's with `ffrtmp fleet status`"
            )
        if ctx.info_name == "show":
            raise click.UsageError("on a central database, give --node: ids are each node's own")
        if ctx.info_name == "events":
            raise click.UsageError(
                "on a central database, events are one node's: give --node (each node numbers "
                "its own events)"
            )
    if ctx is not None and ctx.info_name == "top":
        raise click.UsageError(
            "top reads the jobs' cgroups on this machine: run it on the node; on the central "
            "database, `ffrtmp processes list --state attached` lists every node's running jobs"
        )
    return central_reading(db, meta.get(NODE_META_KEY), shadow=shadow, exit_code=exit_code)


def central_current_or_none(db: str | None) -> bool:
    """`ffrtmp db current` on a PostgreSQL URL: the central schema's revision."""
    if not is_central(db):
        return False
    from ffrtmp.cli.connect import refusal_as_one_sentence
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

    from ffrtmp.cli.connect import refusal_as_one_sentence
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
