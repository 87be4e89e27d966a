"""The change log's triggers come from one module (ffrtmp.change_log): the database at the head
holds exactly its text for every shipped table, and a migration can give a new table the same
triggers from the table it created. Real SQLite files, real Alembic operations."""

from __future__ import annotations

import sqlite3

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Column, Integer, String, create_engine

from ffrtmp import change_log, schema
from ffrtmp.database import open_for_writing

# The text revision 0008 wrote into every database at or past it: a change of change_log that
# alters it alters what a later upgrade writes, and must be a revision of its own.
PROCESSES_INSERT_0008 = (
    "CREATE TRIGGER ship_processes_insert AFTER INSERT ON processes WHEN EXISTS (SELECT 1 FROM "
    "ship_node) BEGIN INSERT OR REPLACE INTO ship_changes (table_name, row_id, changed_at) "
    "VALUES ('processes', NEW.id, strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'); END"
)


def triggers_of(path) -> dict[str, str]:
    con = sqlite3.connect(path)
    try:
        return dict(con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
    finally:
        con.close()


def test_the_head_holds_the_change_logs_triggers_for_every_shipped_table(tmp_path):
    open_for_writing(tmp_path / "node.db").dispose()
    shipped = [name for name in schema.metadata.tables if name not in schema.LOCAL_ONLY_TABLES]
    expected = {
        change_log.trigger_name(name, event): change_log.trigger_sql(
            schema.metadata.tables[name], event
        )
        for name in shipped
        for event in change_log.EVENTS
    }
    found = triggers_of(tmp_path / "node.db")
    assert found == expected
    assert found["ship_processes_insert"] == PROCESSES_INSERT_0008


def test_a_migration_gives_a_new_table_the_same_triggers(tmp_path):
    path = tmp_path / "node.db"
    open_for_writing(path).dispose()
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            op = Operations(MigrationContext.configure(conn))
            table = op.create_table(
                "transcodes",
                Column("number", Integer, primary_key=True),
                Column("codec", String(16), nullable=False),
            )
            change_log.create_triggers(op, table)
    finally:
        engine.dispose()

    con = sqlite3.connect(path)
    try:
        con.execute("INSERT INTO transcodes (codec) VALUES ('h264')")  # no node yet: no entry
        con.execute(
            "INSERT INTO ship_node (node_id, label, created_at) "
            "VALUES ('m.1', 'here', '2026-12-07 10:00:00.000000')"
        )
        con.execute("INSERT INTO transcodes (number, codec) VALUES (7, 'av1')")
        con.execute("UPDATE transcodes SET codec = 'hevc' WHERE number = 1")
        con.commit()
        logged = con.execute("SELECT table_name, row_id FROM ship_changes ORDER BY seq").fetchall()
    finally:
        con.close()
    assert logged == [("transcodes", 7), ("transcodes", 1)]

    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            change_log.drop_triggers(Operations(MigrationContext.configure(conn)), "transcodes")
    finally:
        engine.dispose()
    assert not [name for name in triggers_of(path) if "transcodes" in name]
    assert "ship_processes_insert" in triggers_of(path)
