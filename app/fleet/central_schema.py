"""The central database's tables, derived from the local schema (ffrtmp.schema) by code.

Each shipped local table becomes a central table of the same name and the same columns, with
`node_id` in front and in every key: the primary key is (node_id, id), a unique constraint and
every index get node_id as their first column. Types are widened where PostgreSQL is narrower
than SQLite (Integer -> BigInteger: peak_memory_bytes, start_ticks; String(n) -> Text: a
process's bytes are untrusted and SQLite does not enforce lengths). Foreign keys are left out:
the centre is a copy, and a row may arrive before the row it points to.

A new local column therefore appears here by itself; the central migration chain
(fleet_migrations/) needs one new revision for it, which tests/fleet/test_fleet_schema.py demands.
Two tables exist only centrally: fleet_nodes (one row per node: label, cursor, lag) and
fleet_actions (operators' requeue/discard for the node that owns the item).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from ffrtmp import schema
from ffrtmp.utctime import UTCDateTime

NODE_COLUMN = "node_id"

metadata = MetaData(naming_convention=schema.NAMING_CONVENTION)


def _central_type(local_type):
    if isinstance(local_type, Integer):
        return BigInteger()
    if isinstance(local_type, String):
        return Text()
    return local_type


def shipped_tables() -> list[Table]:
    """The local tables that are shipped, parents before children."""
    return [t for t in schema.metadata.sorted_tables if t.name not in schema.LOCAL_ONLY_TABLES]


def _derive(local: Table) -> Table:
    columns = [Column(NODE_COLUMN, Text, nullable=False)]
    for col in local.columns:
        columns.append(
            Column(col.name, _central_type(col.type), nullable=col.nullable, autoincrement=False)
        )
    extras = [PrimaryKeyConstraint(NODE_COLUMN, *(c.name for c in local.primary_key.columns))]
    for constraint in local.constraints:
        if isinstance(constraint, UniqueConstraint) and constraint.columns:
            extras.append(UniqueConstraint(NODE_COLUMN, *(c.name for c in constraint.columns)))
    central = Table(local.name, metadata, *columns, *extras)
    for index in local.indexes:
        name = index.name.replace(f"ix_{local.name}_", f"ix_{local.name}_node_", 1)
        Index(name, central.c[NODE_COLUMN], *(central.c[c.name] for c in index.columns))
    return central


CENTRAL_TABLES: dict[str, Table] = {t.name: _derive(t) for t in shipped_tables()}

fleet_nodes = Table(
    "fleet_nodes",
    metadata,
    Column(NODE_COLUMN, Text, primary_key=True),
    Column("label", Text, nullable=False),
    # The database role that first shipped as this node: the row-level security policies of
    # app/fleet/roles.sql let a node's role write only the rows of nodes it owns.
    Column("owner", Text, nullable=False, server_default=text("CURRENT_USER")),
    Column("hostname", Text, nullable=False),
    Column("machine_id", Text, nullable=False),
    Column("ffrtmp_version", Text, nullable=False),
    Column("first_shipped_at", UTCDateTime, nullable=False),
    # The node's last successful contact, and the change it had shipped up to then.
    Column("last_contact_at", UTCDateTime, nullable=False),
    Column("last_shipped_at", UTCDateTime),
    Column("shipped_seq", BigInteger, nullable=False),
    # What was left to ship at that contact: changes, and when the oldest of them was made.
    Column("pending_changes", BigInteger, nullable=False),
    Column("oldest_pending_at", UTCDateTime),
)

fleet_actions = Table(
    "fleet_actions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(NODE_COLUMN, Text, nullable=False),
    Column("action", Text, nullable=False),  # requeue | requeue --force | discard
    Column("retry_id", BigInteger, nullable=False),
    Column("requested_at", UTCDateTime, nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("state", Text, nullable=False),  # pending | applied | refused
    Column("done_at", UTCDateTime),
    Column("result", Text),
    Index("ix_fleet_actions_node_id_state", NODE_COLUMN, "state"),
)
