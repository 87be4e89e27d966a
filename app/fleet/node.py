"""Who this node is to the centre: an id made once per local database (the machine id and a
random suffix: two databases on one machine are two nodes, their row ids overlap) and a human
label (the hostname unless --node-label says otherwise), kept in the local table ship_node.

Making the node also starts the change cursor: from then on the triggers (ffrtmp.change_log) log
every insert and update of a shipped table in ship_changes, and every row already there is
logged once, so the first shipment carries the whole history.
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, insert, literal, select, update

from ffrtmp import schema

MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")


@dataclass(frozen=True)
class Node:
    node_id: str
    label: str
    machine_id: str
    hostname: str


def machine_id() -> str:
    for path in MACHINE_ID_FILES:
        try:
            with open(path) as f:
                value = f.read().strip()
        except OSError:
            continue
        if value:
            return value
    return uuid.uuid5(uuid.NAMESPACE_DNS, socket.gethostname()).hex


def ensure_node(engine: Engine, label: str | None) -> tuple[Node, bool]:
    """This database's node, made on first use; (node, whether it was made now)."""
    host = socket.gethostname()
    machine = machine_id()
    with engine.begin() as conn:  # BEGIN IMMEDIATE: no write slips in between
        row = conn.execute(select(schema.ship_node.c.node_id, schema.ship_node.c.label)).first()
        if row is not None:
            node_id, stored_label = row
            if label and label != stored_label:
                conn.execute(update(schema.ship_node).values(label=label))
            return Node(node_id, label or stored_label, machine, host), False
        node_id = f"{machine}.{uuid.uuid4().hex[:8]}"
        conn.execute(
            insert(schema.ship_node).values(
                node_id=node_id, label=label or host, created_at=datetime.now(UTC)
            )
        )
        log_whole_history(conn)
        return Node(node_id, label or host, machine, host), True


def log_whole_history(conn: Connection) -> None:
    """Every row of every shipped table into the change log once (a fresh start of shipping,
    or a centre that lost this node)."""
    from ffrtmp.fleet.central_schema import shipped_tables

    now = datetime.now(UTC)
    for table in shipped_tables():
        rows = select(
            literal(table.name), table.c.id, literal(now, schema.ship_changes.c.changed_at.type)
        )
        conn.execute(
            insert(schema.ship_changes).from_select(["table_name", "row_id", "changed_at"], rows)
        )
