"""The read commands (processes, errors, scans) and what they share: --since, --limit, output
shapes, user errors, read-only opening and light imports."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import click
import pytest
from candidates import make_candidate
from ffrtmp_commands import invoke

from ffrtmp import queries
from ffrtmp.cli.params import DURATION, parse_since
from ffrtmp.errors import classify
from ffrtmp.states import ProcessState

NOW = datetime.now(UTC)


@pytest.fixture(autouse=True)
def _fresh_now() -> None:
    """Each test's history is placed relative to its own start, so relative --since values
    ("25s") mean the same however late in the run the test comes."""
    global NOW
    NOW = datetime.now(UTC)


EAGAIN = classify(OSError(errno.EAGAIN, "Resource temporarily unavailable"))
EACCES = classify(PermissionError(errno.EACCES, "Permission denied"))


def register(
    store,
    pid: int,
    *,
    age_s: float,
    command: str = "ffmpeg",
    start_ticks: int = 1,
    state=ProcessState.DISCOVERED,
) -> int:
    candidate = make_candidate(pid, start_ticks, command=command)
    process_id, _ = store.register(
        candidate,
        job_id=f"auto-{command}-{pid}",
        limits=None,
        now=NOW - timedelta(seconds=age_s),
        state=state,
    )
    return process_id


@pytest.fixture
def history(store):
    """Three processes (one exited, one skipped gst, one recycled pid), errors and scans."""
    ids = {
        "old": register(store, 50001, age_s=7200),
        "gst": register(
            store, 50002, age_s=1800, command="gst-launch-1.0", state=ProcessState.SKIPPED
        ),
        "new": register(store, 50001, age_s=60, start_ticks=99),
    }
    store.record_exit(
        ids["old"], now=NOW - timedelta(seconds=7000), exit_code=0, exit_signal=None, reason=None
    )
    store.record_error(
        "attach", EAGAIN, now=NOW - timedelta(seconds=5000), pid=50001, process_id=ids["old"]
    )
    store.record_error(
        "attach", EACCES, now=NOW - timedelta(seconds=30), pid=50001, process_id=ids["new"]
    )
    store.record_error("scan", EAGAIN, now=NOW - timedelta(seconds=20))
    for age, ok in ((3600, True), (90, False), (10, True)):
        store.record_scan(
            started_at=NOW - timedelta(seconds=age),
            duration_ms=4.5,
            trigger="poll",
            ok=ok,
            seen=200,
            matched=2,
            new=0,
            unreadable=1,
            errors=0 if ok else 1,
        )
    return ids


# --- processes --------------------------------------------------------------------------------


def test_processes_list_newest_first_with_filters(store, db_path, history):
    def ids(*args: str) -> list[int]:
        result = invoke(db_path, "processes", "list", "--json", *args)
        assert result.exit_code == 0, result.output
        return [row["id"] for row in json.loads(result.stdout)]

    assert ids() == [history["new"], history["gst"], history["old"]]
    assert ids("--since", "1h") == [history["new"], history["gst"]]
    assert ids("--state", "exited", "--state", "skipped") == [history["gst"], history["old"]]
    assert ids("--command", "gst-launch-1.0") == [history["gst"]]
    assert ids("--limit", "1") == [history["new"]]


def test_processes_list_shapes(store, db_path, history):
    rows = json.loads(invoke(db_path, "processes", "list", "--json").stdout)
    assert list(rows[0]) == list(queries.PROCESS_COLUMNS)
    old = rows[2]
    assert (old["state"], old["exit_code"], old["job_id"]) == ("exited", 0, "auto-ffmpeg-50001")
    assert old["exited_at"] == (NOW - timedelta(seconds=7000)).isoformat().replace("+00:00", "Z")
    assert old["oom_killed"] is None and "peak_memory_bytes" in old  # every column of the row
    table = invoke(db_path, "processes", "list").stdout.splitlines()
    assert table[0].split() == [
        "ID", "PID", "JOB_ID", "STATE", "DISCOVERED", "RUNTIME", "RESULT"
    ]  # fmt: skip
    assert len(table) == 4
    assert table[3].split()[-1] == "0" and "exit 0" in table[3]
    csv_lines = invoke(db_path, "processes", "list", "--csv").stdout.splitlines()
    assert csv_lines[0] == ",".join(queries.PROCESS_COLUMNS)


def test_processes_show_by_id_and_by_newest_pid(store, db_path, history):
    by_pid = json.loads(invoke(db_path, "processes", "show", "--pid", "50001", "--json").stdout)
    assert by_pid["process"]["id"] == history["new"]  # the recycled pid's newest instance
    assert by_pid["retry_item"] is None
    assert [e["kind"] for e in by_pid["events"]] == ["discovered"]
    by_id = json.loads(invoke(db_path, "processes", "show", str(history["old"]), "--json").stdout)
    assert by_id["process"]["start_ticks"] == 1
    assert [e["kind"] for e in by_id["events"]] == ["discovered", "exited"]
    assert by_id["events"][1]["details"]["exit_code"] == 0
    table = invoke(db_path, "processes", "show", str(history["old"]))
    assert table.exit_code == 0
    assert table.stdout.startswith("process\nFIELD")
    assert "retry item: none" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("processes", "show", "999"), "Error: process 999 does not exist\n"),
        (("processes", "show", "--pid", "77777"), "Error: no process with pid 77777 is recorded\n"),
    ],
)
def test_unknown_ids(store, db_path, history, args, message):
    result = invoke(db_path, *args)
    assert (result.exit_code, result.output) == (1, message)


# --- errors and scans -------------------------------------------------------------------------


def test_errors_list_filters(store, db_path, history):
    def types(*args: str) -> list[tuple[str, str]]:
        result = invoke(db_path, "errors", "list", "--json", *args)
        assert result.exit_code == 0, result.output
        return [(r["operation"], r["error_type"]) for r in json.loads(result.stdout)]

    assert types() == [("scan", "transient"), ("attach", "permanent"), ("attach", "transient")]
    assert types("--type", "permanent") == [("attach", "permanent")]
    assert types("--operation", "attach", "--since", "1h") == [("attach", "permanent")]
    assert types("--pid", "50001") == [("attach", "permanent"), ("attach", "transient")]
    assert types("--limit", "1") == [("scan", "transient")]
    row = json.loads(invoke(db_path, "errors", "list", "--json", "--limit", "1").stdout)[0]
    assert list(row) == list(queries.ERROR_COLUMNS)


def test_errors_stats_counts_by_type_and_operation(store, db_path, history):
    result = invoke(db_path, "errors", "stats", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [(r["error_type"], r["operation"], r["count"]) for r in rows] == [
        ("permanent", "attach", 1),
        ("transient", "attach", 1),
        ("transient", "scan", 1),
    ]
    assert rows[2]["last_at"] == (NOW - timedelta(seconds=20)).isoformat().replace("+00:00", "Z")
    recent = json.loads(invoke(db_path, "errors", "stats", "--since", "25s", "--json").stdout)
    assert [(r["error_type"], r["count"]) for r in recent] == [("transient", 1)]
    table = invoke(db_path, "errors", "stats").stdout.splitlines()
    assert table[0].split() == ["ERROR_TYPE", "OPERATION", "COUNT", "LAST_AT"]


def test_scans_list(store, db_path, history):
    rows = json.loads(invoke(db_path, "scans", "list", "--json").stdout)
    assert [r["ok"] for r in rows] == [True, False, True]
    assert list(rows[0]) == list(queries.SCAN_COLUMNS)
    since = json.loads(invoke(db_path, "scans", "list", "--since", "2m", "--json").stdout)
    assert [r["ok"] for r in since] == [True, False]
    assert len(json.loads(invoke(db_path, "scans", "list", "--limit", "1", "--json").stdout)) == 1


def test_empty_lists_say_so(store, db_path):
    for args, message in (
        (("processes", "list"), "no processes"),
        (("errors", "list"), "no errors"),
        (("scans", "list"), "no scans"),
    ):
        result = invoke(db_path, *args)
        assert (result.exit_code, result.stdout) == (0, message + "\n")


# --- shared parameters and errors -------------------------------------------------------------


def test_since_accepts_durations_and_iso_times():
    now = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert parse_since("90s", now) == now - timedelta(seconds=90)
    assert parse_since("15m", now) == now - timedelta(minutes=15)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2026-01-30T08:00:00Z") == datetime(2026, 1, 30, 8, tzinfo=UTC)
    assert parse_since("2026-01-30T08:00:00+02:00") == datetime(2026, 1, 30, 6, tzinfo=UTC)
    local = datetime(2026, 1, 30, 8).astimezone()
    assert parse_since("2026-01-30T08:00") == local.astimezone(UTC)


def test_one_duration_type_for_every_flag():
    assert DURATION.convert("1m30s", None, None) == 90.0
    assert DURATION.convert(2.5, None, None) == 2.5  # a default given as a number
    assert DURATION.convert("0s", None, None) == 0.0  # db prune --older-than 0s: all finished
    with pytest.raises(click.BadParameter, match="'a month' is not a duration"):
        DURATION.convert("a month", None, None)


def test_since_with_an_iso_time_filters(store, db_path, history):
    since = (NOW - timedelta(seconds=2000)).isoformat()
    rows = json.loads(invoke(db_path, "processes", "list", "--since", since, "--json").stdout)
    assert [r["id"] for r in rows] == [history["new"], history["gst"]]


def test_bad_since_and_limit_are_one_sentence(store, db_path):
    result = invoke(db_path, "processes", "list", "--since", "soon")
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        "Error: Invalid value for '--since': 'soon' is neither a duration (90s, 15m, 2h, 7d), "
        "today, yesterday nor an ISO time (2026-01-31T12:00 or 2026-01-31T12:00:00Z)"
    )
    limit = invoke(db_path, "scans", "list", "--limit", "0")
    assert limit.exit_code == 2
    assert "Invalid value for '--limit': 0 is not in the range x>=1." in limit.output


def test_json_and_csv_together_is_refused(store, db_path):
    result = invoke(db_path, "scans", "list", "--json", "--csv")
    assert result.exit_code == 2
    assert "choose one of --json and --csv" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ("processes", "list"),
        ("processes", "show", "1"),
        ("errors", "list"),
        ("errors", "stats"),
        ("scans", "list"),
        ("retries", "list"),
        ("retries", "show", "1"),
        ("sql", "SELECT 1"),
        ("events", "--follow"),
    ],
)
def test_missing_database_is_one_sentence_and_never_created(tmp_path, args):
    missing = tmp_path / "nowhere" / "ffrtmp.db"
    result = invoke(missing, *args)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: database {missing} does not exist yet "
        "(start `ffrtmp watch` or run `ffrtmp db upgrade` to create it)\n"
    )
    assert not missing.parent.exists()


def test_read_commands_leave_the_file_untouched(store, db_path, history):
    store.close()
    before = db_path.read_bytes()
    for args in (("processes", "list"), ("errors", "stats"), ("scans", "list")):
        assert invoke(db_path, *args).exit_code == 0
    assert db_path.read_bytes() == before


# --- speed and the read schema ----------------------------------------------------------------


def test_read_commands_import_neither_alembic_nor_psutil_nor_the_orm_models(store, db_path):
    """Nor ffrtmp.schema: its Table objects cost 5 ms; the reads use the generated light tables."""
    heavy = ("alembic", "psutil", "ffrtmp.models", "sqlalchemy.orm", "ffrtmp.schema")
    probe = (
        "import sys\n"
        "from ffrtmp.cli import main\n"
        "try:\n"
        f"    main(['retries', 'list', '--json', '--db', {str(db_path)!r}])\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    assert done.stderr.strip() == "[]"
