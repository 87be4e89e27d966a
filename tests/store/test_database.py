"""Opening, creating and protecting the database file."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time

import pytest
from click.testing import CliRunner

from ffrtmp import database
from ffrtmp.cli import main
from ffrtmp.revisions import head_revision


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_missing_database_is_created_at_head_with_private_modes(db_path):
    engine = database.open_for_writing(db_path)
    try:
        assert database.stored_revision(engine) == head_revision()
    finally:
        engine.dispose()
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700


def test_every_connection_gets_the_durability_settings(db_path):
    engine = database.open_for_writing(db_path)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    finally:
        engine.dispose()


def test_directory_as_database_is_refused(tmp_path):
    result = CliRunner().invoke(main, ["db", "upgrade", "--db", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: database path {tmp_path} is a directory, not a database file\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_file_that_is_not_sqlite_is_refused_and_untouched(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n")
    before = digest(path)
    result = CliRunner().invoke(main, ["db", "upgrade", "--db", str(path)])
    assert result.exit_code == 1
    assert result.output == f"Error: {path} is not an SQLite database\n"
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_newer_schema_is_refused_and_untouched(db_path):
    database.open_for_writing(db_path).dispose()
    con = sqlite3.connect(db_path)
    con.execute("UPDATE alembic_version SET version_num = '9999'")
    con.commit()
    con.close()
    before = digest(db_path)
    result = CliRunner().invoke(main, ["db", "upgrade", "--db", str(db_path)])
    assert result.exit_code == 1
    assert "has schema revision 9999, which this ffrtmp" in result.output
    assert result.output.count("\n") == 1
    assert digest(db_path) == before
    with pytest.raises(database.DatabaseError, match="9999"):
        database.open_readonly(db_path)


def test_db_current_reports_any_revision_and_changes_nothing(tmp_path, db_path):
    def current(path):
        return CliRunner().invoke(main, ["db", "current", "--db", str(path)])

    database.open_for_writing(db_path).dispose()
    assert (current(db_path).exit_code, current(db_path).output) == (
        0,
        f"{head_revision()} (head)\n",
    )
    con = sqlite3.connect(db_path)
    con.execute("UPDATE alembic_version SET version_num = '9999'")
    con.commit()
    con.close()
    before = digest(db_path)
    assert current(db_path).output == f"9999 (head is {head_revision()})\n"
    assert digest(db_path) == before
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n")
    refused = current(notes)
    assert refused.exit_code == 1
    assert refused.output.startswith(f"Error: database {notes} cannot be read: ")
    assert refused.output.count("\n") == 1
    missing = current(tmp_path / "absent.db")
    assert (missing.exit_code, missing.output) == (
        1,
        f"Error: database {tmp_path / 'absent.db'} does not exist\n",
    )


def test_foreign_database_with_tables_is_refused(tmp_path):
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    con.commit()
    con.close()
    before = digest(path)
    with pytest.raises(database.DatabaseError, match="not created by ffrtmp"):
        database.open_for_writing(path)
    assert digest(path) == before


def test_readonly_open_never_creates_a_database(tmp_path):
    path = tmp_path / "absent" / "ffrtmp.db"
    with pytest.raises(database.DatabaseError, match="does not exist yet"):
        database.open_readonly(path)
    assert not path.exists() and not path.parent.exists()


def test_readonly_engine_cannot_write(db_path):
    database.open_for_writing(db_path).dispose()
    engine = database.open_readonly(db_path)
    try:
        with pytest.raises(Exception, match="readonly"), engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM alembic_version")
    finally:
        engine.dispose()
    writer = database.make_engine(database.resolve(db_path))
    assert database.stored_revision(writer) == head_revision()
    writer.dispose()


def test_backup_is_a_consistent_private_copy(db_path):
    engine = database.open_for_writing(db_path)
    engine.dispose()
    copy = database.backup(db_path)
    assert copy.name.startswith("ffrtmp.db.bak-")
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    con = sqlite3.connect(copy)
    assert con.execute("SELECT version_num FROM alembic_version").fetchone() == (head_revision(),)
    con.close()


def test_resolution_order_flag_then_env_then_default(monkeypatch, tmp_path):
    monkeypatch.setenv("FFRTMP_DB", str(tmp_path / "env.db"))
    assert database.resolve(tmp_path / "flag.db").path == tmp_path / "flag.db"
    assert database.resolve(None).path == tmp_path / "env.db"
    monkeypatch.delenv("FFRTMP_DB")
    expected = "/var/lib/ffrtmp/ffrtmp.db" if os.geteuid() == 0 else "ffrtmp/ffrtmp.db"
    assert str(database.resolve(None).path).endswith(expected)
    url = database.resolve(f"sqlite:///{tmp_path}/u.db")
    assert url.path == tmp_path / "u.db"


WRITER = textwrap.dedent(
    """
    import select, sys
    from datetime import UTC, datetime
    from ffrtmp.database import open_for_writing
    from ffrtmp.store import Store
    store = Store(open_for_writing(sys.argv[1]))
    n = 0
    while not select.select([sys.stdin], [], [], 0)[0]:  # until the test closes our stdin
        store.record_scan(started_at=datetime.now(UTC), duration_ms=1.0, trigger="periodic",
                          ok=True, seen=n, matched=0, new=0, unreadable=0, errors=0)
        n += 1
    print(n)
    """
)
WRITES_SEEN = 10  # distinct counts a reader must see while the writer writes


def test_reader_and_writer_work_at_the_same_time(db_path):
    """The CLI reads while the daemon writes, in two processes, without 'database is locked'."""
    database.open_for_writing(db_path).dispose()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        counts_seen: set[int] = set()
        engine = database.open_readonly(db_path)
        deadline = time.monotonic() + 60  # for a busy machine; a few reads usually do
        while len(counts_seen) < WRITES_SEEN and time.monotonic() < deadline:
            with engine.connect() as conn:
                counts_seen.add(conn.exec_driver_sql("SELECT count(*) FROM scans").scalar_one())
            assert writer.poll() is None, "the writer stopped by itself"
        engine.dispose()
        out, _ = writer.communicate(input="", timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait()
    assert writer.returncode == 0
    assert len(counts_seen) >= WRITES_SEEN, f"the reader saw only the counts {sorted(counts_seen)}"
    con = sqlite3.connect(db_path)
    assert con.execute("SELECT count(*) FROM scans").fetchone()[0] == int(out) >= WRITES_SEEN
    con.close()


@pytest.mark.vm
def test_a_database_on_a_filesystem_without_shared_memory_is_one_sentence(tmp_path):
    """9p (the VM's shared folder; NFS and some FUSE mounts alike) cannot hold SQLite's WAL
    shared-memory index: `db upgrade` and `watch` say so in one sentence, no traceback."""
    shared = os.environ.get("FFRTMP_TEST_9P_DIR")
    if not shared:
        pytest.skip("needs a 9p folder (make test-v2 gives one in the VM)")
    db = os.path.join(shared, f"ffrtmp-{os.getpid()}.db")
    try:
        for args in (["db", "upgrade"], ["watch", "--once", "--target", "ffrtmp-9p-check"]):
            result = subprocess.run(
                [sys.executable, "-m", "ffrtmp.cli", *args, "--db", db],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert result.returncode == 1, result.stderr
            assert "Traceback" not in result.stderr, result.stderr
            # watch logs its start-up first; the refusal is its last line, one sentence.
            message = result.stderr.strip().splitlines()[-1]
            assert message.startswith(f"Error: database {db} cannot be "), message
            assert "disk I/O error" in message and "local filesystem" in message
    finally:
        for suffix in ("", "-wal", "-shm", ".lock"):
            if os.path.exists(db + suffix):
                os.unlink(db + suffix)


def test_an_older_database_is_upgraded_after_a_backup_copy(db_path):
    """A database a previous ffrtmp wrote (revision 0001) is brought to the head, its rows kept,
    with a consistent backup copy of it as it was."""
    from ffrtmp import migrate

    db_path.parent.mkdir(mode=0o700)
    old = database.make_engine(database.resolve(db_path))
    migrate.upgrade(old, "0001")
    with old.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO scans (started_at, duration_ms, trigger, ok, seen, matched, new, "
            "unreadable, errors) VALUES ('2026-11-01 00:00:00.000000', 1, 'periodic', 1, 1, 0, 0, "
            "0, 0)"
        )
    old.dispose()
    engine = database.open_for_writing(db_path)
    try:
        assert database.stored_revision(engine) == head_revision() != "0001"
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM scans").scalar() == 1
            indexes = {row[1] for row in conn.exec_driver_sql("PRAGMA index_list(processes)")}
        assert "ix_processes_discovered_at" in indexes
    finally:
        engine.dispose()
    (copy,) = db_path.parent.glob(f"{db_path.name}.bak-*")
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    backup = sqlite3.connect(copy)
    try:
        assert backup.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)
        assert backup.execute("SELECT count(*) FROM scans").fetchone() == (1,)
    finally:
        backup.close()


@pytest.mark.parametrize("command", [["db", "prune"], ["watch", "--once"]])
def test_a_server_url_password_never_reaches_a_message(command, tmp_path):
    """Nothing listens on port 1: the commands fail, and their sentence names the URL with its
    password hidden."""
    url = "postgresql+psycopg://node:s3cret-pw@127.0.0.1:1/fleet"
    done = subprocess.run(
        [sys.executable, "-m", "ffrtmp.cli", *command, "--db", url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert "s3cret-pw" not in done.stdout + done.stderr
    assert "postgresql+psycopg://node:***@127.0.0.1:1/fleet" in done.stderr
