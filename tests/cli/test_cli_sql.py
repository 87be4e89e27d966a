"""`ffrtmp sql`: the operator's own query on a read-only connection; writes are refused by
SQLite and leave the data as it was."""

from __future__ import annotations

import errno
import json
from datetime import UTC, datetime

import pytest
from candidates import make_candidate
from ffrtmp_commands import invoke
from sqlalchemy import func, select

from ffrtmp.backoff import BackoffPolicy
from ffrtmp.errors import classify
from ffrtmp.models import Process, RetryItem

NOW = datetime.now(UTC)


@pytest.fixture(autouse=True)
def _fresh_now() -> None:
    """Each test's history is placed relative to its own start, so relative --since values
    ("25s") mean the same however late in the run the test comes."""
    global NOW
    NOW = datetime.now(UTC)


@pytest.fixture
def queued(store):
    """Two processes, each with a pending retry item."""
    for pid in (60001, 60002):
        candidate = make_candidate(pid, argv=("ffmpeg",))
        process_id, _ = store.register(candidate, job_id=f"auto-ffmpeg-{pid}", limits=None, now=NOW)
        error = classify(OSError(errno.EAGAIN, "again"))
        store.record_attach_failure(
            process_id, error, now=NOW, policy=BackoffPolicy(), retry_enabled=True
        )
    return store


def counts(store) -> tuple[int, int]:
    with store.unit() as s:
        return (
            s.scalar(select(func.count()).select_from(RetryItem)),
            s.scalar(select(func.count()).select_from(Process)),
        )


def test_select_prints_rows_as_json_csv_and_table(queued, db_path):
    query = "SELECT pid, state FROM processes ORDER BY pid"
    as_json = invoke(db_path, "sql", query, "--json")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == [
        {"pid": 60001, "state": "retrying"},
        {"pid": 60002, "state": "retrying"},
    ]
    assert (
        invoke(db_path, "sql", query, "--csv").stdout
        == "pid,state\n60001,retrying\n60002,retrying\n"
    )
    assert invoke(db_path, "sql", query).stdout.splitlines() == [
        "PID    STATE",
        "60001  retrying",
        "60002  retrying",
    ]


def test_colons_in_the_sql_are_not_bind_parameters(queued, db_path):
    result = invoke(db_path, "sql", "SELECT '12:30' AS t, count(*) AS n FROM retry_items", "--json")
    assert json.loads(result.stdout) == [{"t": "12:30", "n": 2}]


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM retry_items",
        "UPDATE retry_items SET state = 'dead'",
        "INSERT INTO scans (started_at, duration_ms, trigger, ok, seen, matched, new, "
        "unreadable, errors) VALUES ('2026-01-01', 1, 'poll', 1, 0, 0, 0, 0, 0)",
        "DROP TABLE retry_items",
        "CREATE TABLE x (y)",
    ],
)
def test_writes_are_refused_and_the_data_stays(queued, db_path, statement):
    before = counts(queued)
    result = invoke(db_path, "sql", statement)
    assert result.exit_code == 1
    assert result.output == (
        "Error: the database is opened read-only: attempt to write a readonly database; "
        "nothing was changed\n"
    )
    assert counts(queued) == before == (2, 2)
    with queued.unit() as s:
        assert set(s.scalars(select(RetryItem.state))) == {"pending"}


def test_attach_is_refused_and_creates_no_file(queued, db_path, tmp_path):
    target = tmp_path / "other.db"
    result = invoke(db_path, "sql", f"ATTACH DATABASE '{target}' AS other")
    assert (result.exit_code, result.output) == (
        1,
        "Error: the database is opened read-only: ATTACH and DETACH are not allowed\n",
    )
    assert not target.exists()


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("SELEC 1", 'Error: the SQL failed: near "SELEC": syntax error\n'),
        ("SELECT * FROM nowhere", "Error: the SQL failed: no such table: nowhere\n"),
        (
            "SELECT 1; SELECT 2",
            "Error: the SQL failed: You can only execute one statement at a time.\n",
        ),
    ],
)
def test_sql_errors_are_one_sentence(queued, db_path, statement, message):
    result = invoke(db_path, "sql", statement)
    assert (result.exit_code, result.output) == (1, message)


def test_statement_without_rows(queued, db_path):
    result = invoke(db_path, "sql", "PRAGMA foreign_keys = ON")
    assert (result.exit_code, result.stdout) == (0, "the statement returned no rows\n")
