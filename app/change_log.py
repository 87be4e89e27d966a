"""The change log that shipping reads: SQLite triggers on every shipped table enter each row
inserted or updated into ship_changes, once ship_node has its row (ffrtmp.fleet.node starts
the log, ffrtmp.fleet.shipper ships and empties it).

The triggers are made by migrations, through this module: revision 0008 made them for the
tables shipped then; a revision that adds a shipped table calls `create_triggers(op, table)`
with the Table its `op.create_table` returned; one that rebuilds a shipped table (batch mode
"move and copy" drops its triggers) calls it again afterwards. tests/fleet/test_fleet_schema.py
fails when a shipped table lacks them.

This module's text is what the migrations wrote into existing databases: changing it changes
what a later upgrade writes, never what 0008 wrote.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table

# The statements a trigger follows.
EVENTS = ("INSERT", "UPDATE")

# Same text as ffrtmp.utctime stores: naive UTC with six decimals.
NOW_SQL = "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'"


def trigger_name(table_name: str, event: str) -> str:
    return f"ship_{table_name}_{event.lower()}"


def _name_and_row_id(table: Table | str) -> tuple[str, str]:
    """A table by name has its rows numbered in `id`, as every shipped table has; a Table
    says which column numbers them (its one-column primary key)."""
    if isinstance(table, str):
        return table, "id"
    (row_id,) = table.primary_key.columns
    return table.name, row_id.name


def trigger_sql(table: Table | str, event: str) -> str:
    """The CREATE TRIGGER of `table` for `event` (INSERT or UPDATE)."""
    name, row_id = _name_and_row_id(table)
    return (
        f"CREATE TRIGGER {trigger_name(name, event)} AFTER {event} ON {name} "
        "WHEN EXISTS (SELECT 1 FROM ship_node) BEGIN "
        # REPLACE: one entry per row, renumbered past any batch being shipped.
        f"INSERT OR REPLACE INTO ship_changes (table_name, row_id, changed_at) "
        f"VALUES ('{name}', NEW.{row_id}, {NOW_SQL}); END"
    )


def create_triggers(op: Any, table: Table | str) -> None:
    """In a migration (`op`: alembic.op): log the changes of `table` from now on."""
    for event in EVENTS:
        op.execute(trigger_sql(table, event))


def drop_triggers(op: Any, table: Table | str) -> None:
    """In a migration's downgrade: stop logging the changes of `table`."""
    name, _ = _name_and_row_id(table)
    for event in EVENTS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger_name(name, event)}")
