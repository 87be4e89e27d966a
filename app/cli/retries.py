"""`ffrtmp retries`: the retry queue and the dead letters, and the operator's actions on them."""

from __future__ import annotations

import click

from ffrtmp.cli import on_central
from ffrtmp.cli.central import central_action, node_option
from ffrtmp.cli.connect import existing_store, reading
from ffrtmp.cli.listings import RETRIES
from ffrtmp.cli.options import db_option, output_options
from ffrtmp.cli.table import columns_option

STATE_CHOICES = ("pending", "dead", "succeeded", "cancelled", "all")


@click.group()
def retries() -> None:
    """The attach retry queue (pending) and the dead-letter list (dead).

    A dead letter is a matching process running without its limits. Once that process ends,
    the dead letter is closed ('process exited'): kept as history, no longer listed by
    default nor counted by the ffrtmp_retry_items{state="dead"} gauge.

    Example: ffrtmp retries list --state dead
    """


@retries.command("list")
@db_option
@on_central.every_node
@click.option(
    "--state",
    "states",
    type=click.Choice(STATE_CHOICES),
    multiple=True,
    help="Only items in this state (repeatable); default: pending and dead.",
)
@click.option(
    "--all",
    "history",
    is_flag=True,
    help="History too: every state (unless --state), closed dead letters included.",
)
@columns_option(RETRIES)
@output_options
def list_(
    db: str | None,
    states: tuple[str, ...],
    history: bool,
    columns,
    as_json: bool,
    as_csv: bool,
) -> None:
    """List retry items: pending ones first, by when they are due. By default only what is
    actionable: pending items and the dead letters whose process still runs.

    Example: ffrtmp retries list --json    or    ffrtmp retries list --all
    """
    from ffrtmp import queries
    from ffrtmp.cli.table import emit_listing

    if "all" in states or (history and not states):
        wanted = None
    else:
        wanted = states or queries.RETRY_DEFAULT_STATES
    with reading(db) as conn:
        rows = queries.list_retries(conn, wanted, closed=history)
    scope = "" if wanted is None else f" in state {', '.join(wanted)}"
    if not history:
        scope += " (add --all for closed ones)"
    emit_listing(
        rows,
        RETRIES,
        columns=columns,
        as_json=as_json,
        as_csv=as_csv,
        empty=f"no retry items{scope}",
    )


@retries.command()
@db_option
@on_central.one_node(on_central.SHOW_NEEDS_NODE)
@click.argument("retry_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def show(db: str | None, retry_id: int, as_json: bool) -> None:
    """Show one retry item, its process and the process's event trail.

    Example: ffrtmp retries show 7
    """
    from ffrtmp import queries
    from ffrtmp.cli.records import print_record

    with reading(db) as conn:
        item = queries.get_retry(conn, retry_id)
        if item is None:
            raise click.ClickException(f"retry item {retry_id} does not exist")
        process = queries.get_process(conn, item["process_id"])
        events = queries.events_of_process(conn, item["process_id"])
    print_record(
        {"retry_item": item, "process": process, "events": events},
        as_json=as_json,
    )


@retries.command()
@db_option
@click.argument("retry_id", metavar="ID", type=int, required=False)
@click.option("--all-dead", is_flag=True, help="Requeue every dead letter whose process runs.")
@click.option("--force", is_flag=True, help="Requeue an item an operator discarded, too.")
@node_option
def requeue(
    db: str | None, retry_id: int | None, all_dead: bool, force: bool, node: str | None
) -> None:
    """Make a retry item due now with its attempts reset. Refused unless the very process of
    the item is still running (a recycled pid is another process), and refused for an item
    discarded by an operator unless --force.

    Example: ffrtmp retries requeue 7    or    ffrtmp retries requeue --all-dead
    """
    if (retry_id is None) == (not all_dead):
        raise click.UsageError("give either a retry item ID or --all-dead")
    if central_action(db, "requeue --force" if force else "requeue", retry_id, node):
        return
    from datetime import UTC, datetime

    from ffrtmp import operator_actions

    now = datetime.now(UTC)
    with existing_store(db) as store:
        try:
            if retry_id is not None:
                operator_actions.requeue(store, retry_id, now=now, force=force)
                click.echo(f"retry item {retry_id} requeued: due now, attempts reset to 0")
                return
            summary = operator_actions.requeue_all_dead(store, now=now)
        except operator_actions.ActionRefused as exc:
            raise click.ClickException(str(exc)) from None
    for reason in summary.refused:
        click.echo(f"skipped: {reason}", err=True)
    if not summary.requeued and not summary.refused:
        click.echo("no dead letters to requeue")
        return
    ids = ", ".join(str(i) for i in summary.requeued) or "none"
    click.echo(
        f"requeued {len(summary.requeued)} retry items ({ids}); "
        f"skipped {len(summary.refused)} whose process is gone"
    )


@retries.command()
@db_option
@click.argument("retry_id", metavar="ID", type=int, required=False)
@click.option("--all-dead", is_flag=True, help="Discard every actionable dead letter.")
@node_option
def discard(db: str | None, retry_id: int | None, all_dead: bool, node: str | None) -> None:
    """Cancel a pending or dead retry item for good ('discarded by operator'): no attach is
    tried again, and `retries requeue` refuses it unless --force.

    Example: ffrtmp retries discard 7    or    ffrtmp retries discard --all-dead
    """
    if (retry_id is None) == (not all_dead):
        raise click.UsageError("give either a retry item ID or --all-dead")
    if central_action(db, "discard", retry_id, node):
        return
    from datetime import UTC, datetime

    from ffrtmp import operator_actions

    with existing_store(db) as store:
        try:
            if all_dead:
                ids = operator_actions.discard_all_dead(store, now=datetime.now(UTC))
            else:
                changed = operator_actions.discard(store, retry_id, now=datetime.now(UTC))
        except operator_actions.ActionRefused as exc:
            raise click.ClickException(str(exc)) from None
    if all_dead:
        shown = ", ".join(map(str, ids)) or "none"
        click.echo(f"discarded {len(ids)} dead letters ({shown})")
        return
    if changed:
        click.echo(f"retry item {retry_id} discarded")
    else:
        click.echo(f"retry item {retry_id} was already cancelled; nothing to do")
