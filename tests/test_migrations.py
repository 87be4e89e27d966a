"""The migrations build exactly app.schema, the ORM maps that very schema, and the revision
constant is Alembic's head."""

from __future__ import annotations

import sqlite3

from app import database, migrate, schema
from app.schema_version import HEAD_REVISION


def test_migrations_on_an_empty_file_match_the_schema(tmp_path):
    engine = database.make_engine(database.resolve(tmp_path / "fresh.db"))
    migrate.upgrade(engine)
    assert migrate.current(engine) == HEAD_REVISION
    assert migrate.differences_from_schema(engine) == []
    engine.dispose()


def test_the_orm_classes_map_exactly_the_tables_the_read_queries_use():
    """One definition: the daemon writes through the very Table objects the reads select from."""
    from app.models import Base

    mapped = {mapper.local_table for mapper in Base.registry.mappers}
    assert mapped == set(schema.metadata.tables.values())
    assert Base.metadata is schema.metadata


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
