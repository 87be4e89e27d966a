"""`ffrtmp ship`: send this node's history to the fleet's central PostgreSQL database."""

from __future__ import annotations

import click

from ffrtmp.cli.options import db_option, on_command_line, ship_options

SHIP_TO_ENV_VAR = "FFRTMP_SHIP_TO"


@click.command()
@db_option
@click.option(
    "--to",
    "to",
    required=True,
    envvar=SHIP_TO_ENV_VAR,
    show_envvar=True,
    metavar="URL",
    help="The central database, postgresql+psycopg://USER@HOST/DB (password: passfile, "
    "service, PGPASSWORD or this variable; never on the command line).",
)
@click.option("--once", is_flag=True, help="Ship everything not yet shipped, then exit.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=5000,
    show_default=True,
    help="Changed rows per central transaction.",
)
@ship_options
def ship(db, to, once, batch_size, node_label, ship_interval) -> None:
    """Ship this node's rows to the central database: what changed since the last shipment,
    in batches, idempotently, resuming where a killed shipper stopped.

    Example: FFRTMP_SHIP_TO=postgresql+psycopg://node@fleet/ffrtmp ffrtmp ship --once
    """
    from ffrtmp.cli.connect import existing_store, refusal_as_one_sentence
    from ffrtmp.fleet.actions import apply_pending_actions
    from ffrtmp.fleet.shipper import Shipper

    with existing_store(db) as store, refusal_as_one_sentence():
        shipper = Shipper(
            store.engine,
            to,
            label=node_label,
            batch_size=batch_size,
            on_command_line=on_command_line(to, SHIP_TO_ENV_VAR),
        )
        try:
            if once:
                rows = shipper.ship_all()
                applied = apply_pending_actions(shipper, store)
                rows += shipper.ship_all()
                click.echo(
                    f"node {shipper.node.label} ({shipper.node.node_id}): shipped {rows} rows, "
                    f"applied {applied} actions from the centre"
                )
                return
            from ffrtmp import logs
            from ffrtmp.fleet.shipper import ShipperThread

            logs.setup()
            thread = ShipperThread(
                lambda: shipper, ship_interval, lambda s: apply_pending_actions(s, store)
            )
            thread.start()
            try:
                while thread.is_alive():
                    thread.join(1.0)
            except KeyboardInterrupt:
                thread.stop()
        finally:
            shipper.close()
