"""`watch --ship-to`: the shipper beside the daemon, in its own thread with its own
connections, so the daemon's loop never waits on the network or on the centre."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ffrtmp.fleet.shipper import ShipperThread

if TYPE_CHECKING:
    from ffrtmp.config import ShipSettings


def start_shipping(
    db: str | None, ship_to: str, ship: ShipSettings, *, on_command_line: bool
) -> ShipperThread:
    """`ship`: the watch config's ship section (node label, interval, batch size)."""
    from ffrtmp import database
    from ffrtmp.fleet.actions import apply_pending_actions
    from ffrtmp.fleet.shipper import Shipper
    from ffrtmp.store import Store

    store = Store(database.make_engine(database.resolve(db)))

    def make_shipper() -> Shipper:
        return Shipper(
            store.engine,
            ship_to,
            label=ship.node_label,
            batch_size=ship.batch_size,
            on_command_line=on_command_line,
        )

    thread = ShipperThread(make_shipper, ship.interval, lambda s: apply_pending_actions(s, store))
    thread.start()
    return thread
