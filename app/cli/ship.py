"""`ffrtmp ship`: send this node's history to the fleet's central PostgreSQL database."""

from __future__ import annotations

import sys

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
    "--watch-config",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="YAML watch config whose ship section to use (the flags win over it).",
    envvar="FFRTMP_WATCH_CONFIG",
    show_envvar=True,
)
@ship_options
def ship(db, to, once, watch_config, **given) -> None:
    """Ship this node's rows to the central database: what changed since the last shipment,
    in batches, idempotently, resuming where a killed shipper stopped.

    Example: FFRTMP_SHIP_TO=postgresql+psycopg://node@fleet/ffrtmp ffrtmp ship --once
    """
    from ffrtmp.cli.connect import existing_store, refusal_as_one_sentence
    from ffrtmp.config import ConfigError, apply_overrides, load_config
    from ffrtmp.fleet.actions import apply_pending_actions
    from ffrtmp.fleet.shipper import Shipper

    try:
        settings = apply_overrides(load_config(watch_config), **given).ship
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    with existing_store(db) as store, refusal_as_one_sentence():
        shipper = Shipper(
            store.engine,
            to,
            label=settings.node_label,
            batch_size=settings.batch_size,
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
                lambda: shipper, settings.interval, lambda s: apply_pending_actions(s, store)
            )
            thread.start()
            try:
                while thread.is_alive():
                    thread.join(1.0)
            except KeyboardInterrupt:
                thread.stop()
        finally:
            shipper.close()
