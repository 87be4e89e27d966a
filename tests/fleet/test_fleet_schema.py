"""The central schema: derived from the local one, built by its own migration chain, and
complete: a local column without a central counterpart fails here."""

from __future__ import annotations

import sqlite3

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from ffrtmp import schema
from ffrtmp.cli import main
from ffrtmp.fleet import central
from ffrtmp.fleet.central_schema import CENTRAL_TABLES, NODE_COLUMN, metadata, shipped_tables

pytestmark = pytest.mark.fleet


def test_every_local_column_has_a_central_counterpart_built_by_the_central_migrations(central_db):
    """Fails when a local column was added (app/schema.py) without a central revision in
    fleet_migrations/versions (alembic revision --autogenerate there, see docs/fleet.md)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    assert central.upgrade(central_db) == central.head_revision()
    engine = create_engine(central_db)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()
    for local in shipped_tables():
        central_table = CENTRAL_TABLES[local.name]
        assert [c.name for c in central_table.columns] == [NODE_COLUMN] + [
            c.name for c in local.columns
        ]
        assert [c.name for c in central_table.primary_key.columns] == [NODE_COLUMN, "id"]


def test_every_shipped_table_logs_its_changes_at_the_local_head(tmp_path):
    """A later migration that rebuilds a table (batch mode) drops its triggers: this fails."""
    from ffrtmp.database import open_for_writing

    path = tmp_path / "node.db"
    open_for_writing(path).dispose()
    conn = sqlite3.connect(path)
    try:
        triggers = {
            (tbl, sql.split(" AFTER ")[1].split(" ")[0])
            for tbl, sql in conn.execute(
                "SELECT tbl_name, sql FROM sqlite_master WHERE type='trigger'"
            )
        }
    finally:
        conn.close()
    shipped = {t.name for t in schema.metadata.sorted_tables} - set(schema.LOCAL_ONLY_TABLES)
    assert triggers == {(t, w) for t in shipped for w in ("INSERT", "UPDATE")}


def test_db_upgrade_on_a_postgresql_url_creates_then_keeps_the_central_schema(central_db):
    runner = CliRunner()
    first = runner.invoke(main, ["db", "upgrade"], env={"FFRTMP_DB": central_db})
    assert first.exit_code == 0, first.output
    assert f"fleet schema at revision {central.head_revision()}" in first.output
    again = runner.invoke(main, ["db", "upgrade"], env={"FFRTMP_DB": central_db})
    assert again.exit_code == 0, again.output
    current = runner.invoke(main, ["db", "current"], env={"FFRTMP_DB": central_db})
    assert current.output == f"{central.head_revision()} (head)\n"
    engine = create_engine(central_db)
    try:
        with engine.connect() as conn:
            tables = set(
                conn.exec_driver_sql(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                ).scalars()
            )
    finally:
        engine.dispose()
    assert tables == set(CENTRAL_TABLES) | {"fleet_nodes", "fleet_actions", "alembic_version"}


def test_db_check_on_a_postgresql_url_checks_the_central_schema(central_db, postgres_server):
    runner = CliRunner()
    central.upgrade(central_db)
    fine = runner.invoke(main, ["db", "check"], env={"FFRTMP_DB": central_db})
    assert fine.exit_code == 0, fine.output
    assert fine.output == f"ok: fleet schema at revision {central.head_revision()}\n"
    db = make_url(central_db).database
    postgres_server.admin_sql("ALTER TABLE processes DROP COLUMN argv_sha256", database=db)
    damaged = runner.invoke(main, ["db", "check"], env={"FFRTMP_DB": central_db})
    assert damaged.exit_code == 1
    assert "differs from the fleet schema definition" in damaged.output
    assert "argv_sha256" in damaged.output


def test_a_newer_central_schema_is_refused_in_one_sentence(central_db, postgres_server):
    central.upgrade(central_db)
    db = make_url(central_db).database
    postgres_server.admin_sql("UPDATE alembic_version SET version_num = 'c999'", database=db)
    result = CliRunner().invoke(main, ["db", "upgrade"], env={"FFRTMP_DB": central_db})
    assert result.exit_code == 1
    assert "has fleet schema revision c999, which this ffrtmp" in result.output
    assert "Traceback" not in result.output


def test_a_password_on_the_command_line_is_refused_and_never_printed(postgres_server):
    url = postgres_server.password_url("postgres", password="s3cret-pw")
    result = CliRunner().invoke(main, ["db", "upgrade", "--db", url])
    assert result.exit_code == 1
    assert "carries a password on the command line" in result.output
    assert "s3cret-pw" not in result.output


def test_the_change_log_holds_each_row_once_under_its_latest_change(store, db_path):
    """A row changed while a batch ships must not be forgotten when that batch's entries are
    deleted: each change renumbers the row's one entry past every earlier number."""
    from datetime import UTC, datetime

    from fleet_helpers import make_history

    from ffrtmp.fleet.node import ensure_node

    ensure_node(store.engine, "edge")
    (process_id,) = make_history(store, 1)

    def entry() -> list[tuple]:
        conn = sqlite3.connect(db_path)
        try:
            return conn.execute(
                "SELECT seq FROM ship_changes WHERE table_name = 'processes' AND row_id = ?",
                (process_id,),
            ).fetchall()
        finally:
            conn.close()

    (before,) = entry()
    for _ in range(5):
        store.touch_seen([process_id], now=datetime.now(UTC))
    (after,) = entry()
    assert after[0] > before[0]
