"""Every read command's queries use an index on the history tables: SQLite's own plan for
each statement the commands send (EXPLAIN QUERY PLAN) names no full scan of `processes`,
`process_events`, `error_events`, `scans` or `health_snapshots`, which grow with every process
a node runs and every scan it makes."""

from __future__ import annotations

import errno
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from candidates import make_candidate
from click.testing import CliRunner
from sqlalchemy import Engine, event

from ffrtmp.cli import main
from ffrtmp.errors import classify

BIG_TABLES = ("processes", "process_events", "error_events", "scans", "health_snapshots")
# "SCAN t" alone reads every row of t; "SCAN t USING [COVERING] INDEX i" walks an index in
# order (with a LIMIT it stops early) and "SEARCH t USING …" looks rows up.
FULL_SCAN = re.compile(rf"\bSCAN ({'|'.join(BIG_TABLES)})\b(?! USING)")

READ_COMMANDS = [
    ("processes", "list"),
    ("processes", "list", "--since", "1h"),
    ("processes", "list", "--command", "ffmpeg"),
    ("processes", "list", "--command", "ffmpeg", "--since", "1h"),
    ("processes", "list", "--state", "exited"),
    ("processes", "show", "1"),
    ("processes", "show", "--pid", "60001"),
    ("processes", "show", "auto-ffmpeg-60003-1"),
    ("processes", "show", "run-nightly"),  # a job id that names no pid walks an index
    ("processes", "list", "--oom"),
    ("processes", "list", "--exit-code", "0"),
    ("processes", "list", "--signal", "KILL", "--since", "today"),
    ("events",),
    ("events", "--since", "yesterday"),
    ("errors", "list"),
    ("errors", "list", "--since", "1h"),
    ("errors", "list", "--type", "transient"),
    ("errors", "list", "--pid", "60001"),
    ("errors", "stats"),
    ("errors", "stats", "--since", "1h"),
    ("scans", "list"),
    ("retries", "list"),
    ("retries", "list", "--state", "all"),
    ("retries", "show", "1"),
    ("health",),
    ("health", "--history"),
]


@pytest.fixture
def history(store) -> None:
    now = datetime.now(UTC)
    for i in range(40):
        candidate = make_candidate(
            60001 + i,
            command="ffmpeg" if i % 2 else "gst-launch-1.0",
            argv=("ffmpeg", "-i", f"in{i}"),
            rule="ffmpeg",
        )
        process_id, _ = store.register(
            candidate, job_id=f"auto-ffmpeg-{i}", limits=None, now=now - timedelta(minutes=i)
        )
        error = classify(OSError(errno.EAGAIN, "Resource temporarily unavailable"))
        store.record_error("attach", error, now=now, process_id=process_id, pid=60001 + i)
        if i % 3 == 0:
            store.record_exit(process_id, now=now, exit_code=0, exit_signal=None, reason=None)
    store.record_scan(
        started_at=now,
        duration_ms=1.0,
        trigger="periodic",
        ok=True,
        seen=1,
        matched=1,
        new=1,
        unreadable=0,
        errors=0,
    )


@pytest.fixture
def statements() -> Iterator[list[tuple[str, tuple]]]:
    """Every statement any engine sends while the test runs, with its parameters."""
    sent: list[tuple[str, tuple]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append((statement, tuple(parameters or ())))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def _assert_indexed(db_path, statements, command) -> None:
    queried = [
        (sql, params)
        for sql, params in statements
        if sql.lstrip().upper().startswith("SELECT") and any(t in sql for t in BIG_TABLES)
    ]
    assert queried, "the command read none of the big tables"
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        for sql, params in queried:
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            scans = [step for step in plan if FULL_SCAN.search(step)]
            assert not scans, f"{' '.join(command)}: {scans} in the plan of\n{sql}"
    finally:
        conn.close()


@pytest.mark.parametrize("command", READ_COMMANDS, ids=" ".join)
def test_read_command_scans_no_big_table_in_full(db_path, history, statements, command):
    result = CliRunner().invoke(main, [*command, "--db", str(db_path)])
    assert result.exit_code in (0, 1, 2), result.output  # health answers with 0/1/2
    _assert_indexed(db_path, statements, command)


def test_each_poll_of_events_follow_is_indexed(db_path, history, statements):
    """`events --follow` polls until Ctrl-C; its poll is the query here, run as it runs."""
    from ffrtmp import queries
    from ffrtmp.database import open_readonly

    engine = open_readonly(db_path)
    try:
        with engine.connect() as conn:
            cursor = queries.event_cursor(conn)
            assert queries.events_after(conn, cursor, limit=500) == []
            assert len(queries.events_after(conn, (cursor[0] - 3, cursor[1] - 2), limit=500)) == 5
    finally:
        engine.dispose()
    _assert_indexed(db_path, statements, ("events", "--follow"))
