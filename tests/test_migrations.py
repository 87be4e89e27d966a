"""The migrations build exactly the models, and the revision constant is Alembic's head."""

from __future__ import annotations

import sqlite3

from app import database, migrate
from app.schema_version import HEAD_REVISION


def test_migrations_on_an_empty_file_match_the_models(tmp_path):
    engine = database.make_engine(database.resolve(tmp_path / "fresh.db"))
    migrate.upgrade(engine)
    assert migrate.current(engine) == HEAD_REVISION
    assert migrate.pending_model_changes(engine) == []
    engine.dispose()


def test_head_revision_constant_is_alembics_head():
    assert migrate.head_revision() == HEAD_REVISION


def test_schema_has_the_documented_indexes(tmp_path):
    engine = database.open_for_writing(tmp_path / "x.db")
    engine.dispose()
    con = sqlite3.connect(tmp_path / "x.db")
    indexes = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    con.close()
    assert {
        "ix_retry_items_state_next_attempt_at",
        "ix_error_events_error_type_occurred_at",
        "ix_error_events_occurred_at",
        "ix_processes_state_discovered_at",
        "ix_processes_pid",
    } <= indexes
