"""The read commands on the central database, without changing their queries.

The connection is read-only (the session's transactions are READ ONLY, on top of whatever role
it logs in as). Before that, each shipped table is shadowed by a temporary view of the same name
(PostgreSQL looks in pg_temp first) holding one node's rows: the node the session setting
`ffrtmp.node` names. So the very queries of ffrtmp.queries run unchanged, joins stay within a
node, and every one of them uses the central indexes, which all begin with node_id:
- with --node, the setting names that node and each query runs once, with the node's own ids;
- without it, each query runs once per node (by label) and every row gains a `node` key (the
  node's label), shown as the NODE column: results come node by node, `--limit` per node.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, select

from ffrtmp.fleet.central_schema import CENTRAL_TABLES, fleet_nodes

NODE_SETTING = "ffrtmp.node"


class UnknownNode(Exception):
    pass


def resolve_node(conn, node: str) -> str:
    """A node id from an id or a label; one sentence when none or several match."""
    rows = (
        conn.execute(
            select(fleet_nodes.c.node_id).where(
                (fleet_nodes.c.node_id == node) | (fleet_nodes.c.label == node)
            )
        )
        .scalars()
        .all()
    )
    if len(rows) != 1:
        many = "several nodes are" if rows else "no node is"
        raise UnknownNode(f"{many} named {node!r} in the central database")
    return rows[0]


class CentralRow(tuple):
    """A result row that also answers `_mapping`, as SQLAlchemy's rows do."""

    _mapping: dict[str, Any]

    def __new__(cls, mapping: dict[str, Any]) -> CentralRow:
        row = super().__new__(cls, tuple(mapping.values()))
        row._mapping = mapping
        return row


class CentralResult:
    def __init__(self, rows: list[CentralRow]) -> None:
        self.rows = rows
        self.returns_rows = True

    def __iter__(self) -> Iterator[CentralRow]:
        return iter(self.rows)

    def first(self):
        return self.rows[0] if self.rows else None

    def scalar(self):
        return self.rows[0][0] if self.rows else None

    def all(self):
        return list(self.rows)

    def keys(self):
        return list(self.rows[0]._mapping) if self.rows else []


class EveryNode:
    """The few Connection methods ffrtmp.queries uses: each statement once per node."""

    def __init__(self, conn: Connection, nodes: list[tuple[str, str]]) -> None:
        self.conn = conn
        self.nodes = nodes  # (node_id, label), by label

    def execute(self, statement, *args, **kwargs) -> CentralResult:
        rows: list[CentralRow] = []
        for node_id, label in self.nodes:
            _set_node(self.conn, node_id)
            for row in self.conn.execute(statement, *args, **kwargs):
                rows.append(CentralRow({"node": label, **row._mapping}))
        return CentralResult(rows)

    def __getattr__(self, name):
        return getattr(self.conn, name)


def _set_node(conn: Connection, node_id: str) -> None:
    conn.exec_driver_sql("SELECT set_config(%s, %s, false)", (NODE_SETTING, node_id))


select_node = _set_node  # the shadowing views show this node's rows from now on


def _shadow(conn: Connection) -> None:
    for name, table in CENTRAL_TABLES.items():
        columns = ", ".join(f'"{c.name}"' for c in table.columns if c.name != "node_id")
        conn.exec_driver_sql(
            f"CREATE TEMP VIEW {name} AS SELECT {columns} FROM public.{name} "
            f"WHERE node_id = current_setting('{NODE_SETTING}')"
        )


@contextmanager
def central_reading(db: str, node: str | None, *, shadow: bool, on_command_line: bool = False):
    """A read-only connection to the central database, closed with its engine when the block
    ends. `shadow`: the shipped tables as `node` has them (or, without a node, each statement
    once per node); else the central tables themselves, node_id and all. Raises
    ffrtmp.database.DatabaseError when the database cannot be opened, UnknownNode when `node`
    names no single node."""
    from ffrtmp.fleet import central

    engine = central.open_central(db, on_command_line=on_command_line)
    try:
        with engine.connect() as conn:
            if shadow:
                if node:
                    nodes = [(resolve_node(conn, node), node)]
                else:
                    order = (fleet_nodes.c.label, fleet_nodes.c.node_id)
                    query = select(fleet_nodes.c.node_id, fleet_nodes.c.label).order_by(*order)
                    nodes = [tuple(row) for row in conn.execute(query)]
                _shadow(conn)
            conn.commit()
            conn.exec_driver_sql("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            conn.commit()  # the setting holds from the next transaction on
            if not shadow:
                yield conn
            elif node:
                _set_node(conn, nodes[0][0])
                conn.commit()  # a session setting: a command's rollback (events -f) keeps it
                yield conn
            else:
                yield EveryNode(conn, nodes)
    finally:
        engine.dispose()
