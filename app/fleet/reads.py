"""The read commands on the central database, without changing their queries.

The connection is read-only (the session's transactions are READ ONLY, on top of whatever role
it logs in as). Before that, each shipped table is shadowed by a temporary view of the same name
(PostgreSQL looks in pg_temp first), so the very queries of ffrtmp.queries run unchanged:
- with --node, the view holds that node's rows only, with their own ids;
- without it, all nodes' rows, each id (id, process_id, daemon_run_id) made fleet-unique as
  node_number * 2**40 + id, so joins match within a node only; every result row is turned back
  into the node's own ids and gains a `node` key (the node's label), shown as the NODE column.
Results come node by node where a query orders rows, since the order is per node's id space.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, select

from ffrtmp.fleet.central_schema import CENTRAL_TABLES, fleet_nodes


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


ID_SPACE = 2**40
ID_COLUMNS = ("id", "process_id", "daemon_run_id")


class CentralRow(tuple):
    """A result row with the ids turned back and the node's label added."""

    _mapping: dict[str, Any]

    def __new__(cls, mapping: dict[str, Any]) -> CentralRow:
        row = super().__new__(cls, tuple(mapping.values()))
        row._mapping = mapping
        return row


class CentralResult:
    def __init__(self, result, labels: dict[int, str], decode: bool) -> None:
        self.rows = (
            [self._row(dict(r._mapping), labels, decode) for r in result]
            if result.returns_rows
            else []
        )
        self.returns_rows = result.returns_rows

    @staticmethod
    def _row(mapping: dict[str, Any], labels: dict[int, str], decode: bool) -> CentralRow:
        if decode and "id" in mapping and isinstance(mapping["id"], int):
            number = mapping["id"] // ID_SPACE
            for key in ID_COLUMNS:
                if isinstance(mapping.get(key), int):
                    mapping[key] %= ID_SPACE
            return CentralRow({"node": labels.get(number, "?"), **mapping})
        return CentralRow(mapping)

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


class CentralConnection:
    """The few Connection methods ffrtmp.queries uses, over the shadowed tables."""

    def __init__(self, conn: Connection, labels: dict[int, str], decode: bool) -> None:
        self.conn = conn
        self.labels = labels
        self.decode = decode

    def execute(self, statement, *args, **kwargs):
        return CentralResult(
            self.conn.execute(statement, *args, **kwargs), self.labels, self.decode
        )

    def exec_driver_sql(self, statement, *args, **kwargs):
        return self.conn.exec_driver_sql(statement, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.conn, name)


def _shadow(conn: Connection, node_id: str | None) -> dict[int, str]:
    nodes = conn.execute(
        fleet_nodes.select()
        .with_only_columns(fleet_nodes.c.node_id, fleet_nodes.c.label)
        .order_by(fleet_nodes.c.first_shipped_at, fleet_nodes.c.node_id)
    ).all()
    numbers = {node: number for number, (node, _label) in enumerate(nodes, start=1)}
    labels = {number: label for (node, label), number in zip(nodes, numbers.values(), strict=True)}
    conn.exec_driver_sql(
        "CREATE TEMP TABLE fleet_node_numbers (node_id text PRIMARY KEY, number bigint)"
    )
    if numbers:
        conn.exec_driver_sql(
            "INSERT INTO fleet_node_numbers VALUES " + ", ".join(["(%s, %s)"] * len(numbers)),
            tuple(x for pair in numbers.items() for x in pair),
        )
    for name, table in CENTRAL_TABLES.items():
        columns = []
        for col in table.columns:
            if col.name == "node_id":
                continue
            if col.name in ID_COLUMNS and node_id is None:
                columns.append(f"n.number * {ID_SPACE} + t.{col.name} AS {col.name}")
            else:
                columns.append(f"t.{col.name}")
        where = "WHERE t.node_id = %(node)s" if node_id is not None else ""
        sql = (
            f"CREATE TEMP VIEW {name} AS SELECT {', '.join(columns)} FROM public.{name} t "
            f"JOIN fleet_node_numbers n ON n.node_id = t.node_id {where}"
        )
        conn.exec_driver_sql(
            sql.replace("%(node)s", "'" + (node_id or "").replace("'", "''") + "'")
        )
    return labels


@contextmanager
def central_reading(db: str, node: str | None, *, shadow: bool, exit_code: int = 1):
    import click

    from ffrtmp.cli.connect import refusal_as_one_sentence
    from ffrtmp.fleet import central
    from ffrtmp.fleet.hooks import on_command_line

    with refusal_as_one_sentence(exit_code):
        engine = central.open_central(db, on_command_line=on_command_line(db))
    try:
        with engine.connect() as conn:
            node_id = None
            if node:
                try:
                    node_id = resolve_node(conn, node)
                except UnknownNode as exc:
                    raise click.ClickException(str(exc)) from None
            labels = _shadow(conn, node_id) if shadow else {}
            conn.commit()
            conn.exec_driver_sql("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            conn.commit()  # the setting holds from the next transaction on
            if shadow:
                yield CentralConnection(conn, labels, decode=node_id is None)
            else:
                yield conn
    finally:
        engine.dispose()
