"""The migrations build exactly ffrtmp.schema, the ORM maps that very schema, the read commands'
light tables are generated from it, and the revisions read without Alembic are Alembic's."""

from __future__ import annotations

import sqlite3

import pytest
from alembic.script import ScriptDirectory

from ffrtmp import database, migrate, schema
from ffrtmp.revisions import RevisionsError, find_head, head_revision, known_revisions, read_graph


def test_migrations_on_an_empty_file_match_the_schema(tmp_path):
    engine = database.make_engine(database.resolve(tmp_path / "fresh.db"))
    migrate.upgrade(engine)
    assert migrate.current(engine) == head_revision()
    with engine.connect() as conn:
        assert migrate.differences_from_schema(conn) == []
    engine.dispose()


def test_the_orm_classes_map_exactly_the_tables_the_read_queries_use():
    """One definition: the daemon writes through the very Table objects the reads select from.
    The shipping tables have no class: ffrtmp.fleet writes them in Core."""
    from ffrtmp.models import Base

    mapped = {mapper.local_table for mapper in Base.registry.mappers}
    local_only = {schema.metadata.tables[name] for name in schema.LOCAL_ONLY_TABLES}
    assert mapped == set(schema.metadata.tables.values()) - local_only
    assert Base.metadata is schema.metadata


def test_the_read_tables_are_generated_from_the_schema():
    from pathlib import Path

    import ffrtmp.read_tables

    stale = "app/read_tables.py is stale: run `python -m ffrtmp.schema > app/read_tables.py`"
    assert Path(ffrtmp.read_tables.__file__).read_text() == schema.read_tables_source(), stale
    for name, table in schema.metadata.tables.items():
        light = getattr(ffrtmp.read_tables, name)
        assert [(c.name, type(c.type)) for c in light.columns] == [
            (c.name, type(c.type)) for c in table.columns
        ]


def test_the_revisions_read_without_alembic_are_alembics():
    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert head_revision() == script.get_current_head()
    assert known_revisions() == {rev.revision for rev in script.walk_revisions()}


def _write_revision(versions, revision, down_revision) -> None:
    # The header migrations/script.py.mako writes, with a docstring that mentions both names.
    (versions / f"{revision}_step.py").write_text(
        f'"""step\n\nRevision ID: {revision}\nRevises: {down_revision}\n"""\n\n'
        "from collections.abc import Sequence\n\n"
        f"revision: str = {revision!r}\n"
        f"down_revision: str | None = {down_revision!r}\n"
        "branch_labels: str | Sequence[str] | None = None\n"
    )


def test_a_new_migration_moves_the_head_and_a_merge_joins_two_heads(tmp_path):
    _write_revision(tmp_path, "0001", None)
    _write_revision(tmp_path, "0002", "0001")
    assert read_graph(tmp_path) == {"0001": (), "0002": ("0001",)}
    assert find_head(read_graph(tmp_path)) == "0002"
    _write_revision(tmp_path, "0003", "0001")
    with pytest.raises(RevisionsError, match=r"2 heads \(0002, 0003\)"):
        find_head(read_graph(tmp_path))
    _write_revision(tmp_path, "0004", ("0002", "0003"))
    assert find_head(read_graph(tmp_path)) == "0004"


def test_no_migrations_is_an_error_that_says_so(tmp_path):
    with pytest.raises(RevisionsError, match="no migrations"):
        find_head(read_graph(tmp_path))
    with pytest.raises(RevisionsError, match="no migrations"):
        find_head(read_graph(tmp_path / "not-installed"))


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


def test_revision_0003_closes_the_dead_letters_of_ended_processes_and_marks_once_runs(tmp_path):
    """A database written at 0002 keeps its rows; what they meant is stated in the new columns."""
    path = tmp_path / "old.db"
    engine = database.make_engine(database.resolve(path))
    migrate.upgrade(engine, "0002")
    con = sqlite3.connect(path)
    t = "2026-11-01 10:00:00.000000"
    process = (
        "INSERT INTO processes (id, boot_id, pid, start_ticks, started_at, command, argv, job_id,"
        " state, discovered_at, last_seen_at, exited_at) VALUES (?, 'b', ?, 1, ?, 'ffmpeg', '[]',"
        " 'auto-ffmpeg', 'dead', ?, ?, ?)"
    )
    con.execute(process, (1, 101, t, t, t, t))  # ended
    con.execute(process, (2, 102, t, t, t, None))  # still running
    item = (
        "INSERT INTO retry_items (process_id, operation, state, attempt, max_attempts,"
        " created_at, updated_at) VALUES (?, 'attach', 'dead', 3, 3, ?, ?)"
    )
    con.execute(item, (1, t, t))
    con.execute(item, (2, t, t))
    run = (
        "INSERT INTO daemon_runs (started_at, stop_reason, pid, hostname, version, discovery,"
        " config) VALUES (?, ?, 1, 'h', 'v', 'poll', '{}')"
    )
    con.execute(run, (t, "once"))
    con.execute(run, (t, "stopped"))
    con.commit()
    con.close()

    migrate.upgrade(engine)

    con = sqlite3.connect(path)
    try:
        rows = con.execute(
            "SELECT process_id, state, closed_at, closed_reason FROM retry_items ORDER BY 1"
        ).fetchall()
        assert rows == [(1, "dead", t, "process exited"), (2, "dead", None, None)]
        assert con.execute("SELECT once FROM daemon_runs ORDER BY id").fetchall() == [(1,), (0,)]
    finally:
        con.close()
    engine.dispose()
