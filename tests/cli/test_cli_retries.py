"""`ffrtmp retries`: listing the queue and dead letters, and the operator's requeue and discard,
on real SQLite files written by the Store and real processes."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
from datetime import UTC, datetime, timedelta

import pytest
from candidates import make_candidate
from ffrtmp_commands import invoke
from sqlalchemy import select

from ffrtmp.backoff import BackoffPolicy
from ffrtmp.candidate import Candidate
from ffrtmp.errors import classify
from ffrtmp.models import Process, ProcessEvent, RetryItem
from ffrtmp.queries import RETRY_COLUMNS
from ffrtmp.scanner import Scanner
from ffrtmp.states import EventKind, ProcessState, RetryState

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _fresh_now() -> None:
    """Each test's history is placed relative to its own start, so relative --since values
    ("25s") mean the same however late in the run the test comes."""
    global NOW
    NOW = datetime.now(UTC).replace(microsecond=0)


TRANSIENT = classify(OSError(errno.EAGAIN, "Resource temporarily unavailable"))
ONE_TRY = BackoffPolicy(max_attempts=1)


def fake_candidate(pid: int, start_ticks: int = 1) -> Candidate:
    """A process that is not running (its start time is not the one of any live pid)."""
    return make_candidate(pid, start_ticks, argv=("ffmpeg", "-i", f"rtmp://in/{pid}"))


def live_candidate(pid: int) -> Candidate:
    # self_pid=None: the sleeper is our own child, which a Scanner given our pid would skip.
    candidate = Scanner([], self_pid=None).inspect(pid, require_match=False)
    assert candidate is not None
    return candidate


def pending_item(store, candidate: Candidate) -> tuple[int, int]:
    """A registered process with a pending retry item; returns (process id, retry id)."""
    process_id, _ = store.register(
        candidate, job_id=f"auto-ffmpeg-{candidate.pid}", limits=None, now=NOW
    )
    outcome = store.record_attach_failure(
        process_id, TRANSIENT, now=NOW, policy=ONE_TRY, retry_enabled=True, attempt=0
    )
    assert outcome.state == RetryState.PENDING
    return process_id, retry_id_of(store, process_id)


def dead_item(store, candidate: Candidate) -> tuple[int, int]:
    """A process whose retry ran once and failed again: dead-lettered, as the daemon does."""
    process_id, retry_id = pending_item(store, candidate)
    later = NOW + timedelta(minutes=1)
    attempt = store.claim_retry(retry_id, now=later, claim_seconds=60)
    assert attempt == 1
    outcome = store.record_attach_failure(
        process_id, TRANSIENT, now=later, policy=ONE_TRY, retry_enabled=True, attempt=attempt
    )
    assert outcome.state == RetryState.DEAD
    return process_id, retry_id


def retry_id_of(store, process_id: int) -> int:
    with store.unit() as s:
        return s.scalar(select(RetryItem.id).where(RetryItem.process_id == process_id))


def item_row(store, retry_id: int) -> RetryItem:
    with store.unit() as s:
        return s.get(RetryItem, retry_id)


def process_row(store, process_id: int) -> Process:
    with store.unit() as s:
        return s.get(Process, process_id)


def event_kinds(store, process_id: int) -> list[str]:
    with store.unit() as s:
        return list(
            s.scalars(
                select(ProcessEvent.kind)
                .where(ProcessEvent.process_id == process_id)
                .order_by(ProcessEvent.id)
            )
        )


@pytest.fixture
def four_states(store):
    """One retry item in each state; returns {state: retry id}."""
    ids = {}
    _, ids["pending"] = pending_item(store, fake_candidate(40001))
    _, ids["dead"] = dead_item(store, fake_candidate(40002))
    process_id, ids["succeeded"] = pending_item(store, fake_candidate(40003))
    from ffrtmp.limits import Limits

    store.record_attached(
        process_id, cgroup_version=2, cgroup_paths=["/x"], applied=Limits(), now=NOW, attempt=1
    )
    process_id, ids["cancelled"] = pending_item(store, fake_candidate(40004))
    assert store.cancel_retry(process_id, reason="target_exited", now=NOW)
    return ids


# --- list -------------------------------------------------------------------------------------


def test_list_by_default_shows_pending_and_dead_only(store, db_path, four_states):
    result = invoke(db_path, "retries", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["id"], r["state"]) for r in rows] == [
        (four_states["pending"], "pending"),
        (four_states["dead"], "dead"),
    ]


def test_list_json_has_the_documented_keys_and_values(store, db_path, four_states):
    rows = json.loads(invoke(db_path, "retries", "list", "--json", "--state", "dead").stdout)
    assert len(rows) == 1
    row = rows[0]
    assert list(row) == list(RETRY_COLUMNS)
    assert row["pid"] == 40002
    assert row["command"] == "ffmpeg"
    assert row["job_id"] == "auto-ffmpeg-40002"
    assert (row["attempt"], row["max_attempts"]) == (1, 1)
    assert row["last_error_type"] == "transient"
    assert row["last_error"] == "EAGAIN: [Errno 11] Resource temporarily unavailable"
    assert row["final_reason"] == "max attempts reached"
    assert row["next_attempt_at"] is None
    assert row["last_attempt_at"] == (NOW + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--state", "succeeded"), ["succeeded"]),
        (("--state", "cancelled", "--state", "pending"), ["pending", "cancelled"]),
        (("--state", "all"), ["pending", "dead", "succeeded", "cancelled"]),
    ],
)
def test_list_state_filter(store, db_path, four_states, args, expected):
    rows = json.loads(invoke(db_path, "retries", "list", "--json", *args).stdout)
    assert [r["state"] for r in rows] == expected


def test_list_table_and_csv_shapes(store, db_path, four_states):
    table = invoke(db_path, "retries", "list")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    headers = ["ID", "PID", "JOB_ID", "STATE", "ATTEMPT", "NEXT", "ERROR", "LAST_ERROR"]
    assert lines[0].split() == headers
    assert len(lines) == 3
    # Times the table shows relative to now; the attempts against the most allowed.
    chosen = invoke(db_path, "retries", "list", "-o", "id,attempt,last_attempt_at").stdout
    assert re.search(r"\b\d+/\d+\s+(now|in [0-9dhms]+|[0-9dhms]+ ago)$", chosen.splitlines()[2])
    csv_lines = invoke(db_path, "retries", "list", "--csv").stdout.splitlines()
    assert csv_lines[0] == ",".join(RETRY_COLUMNS)
    assert len(csv_lines) == 3


def test_list_empty_queue_says_so(store, db_path):
    result = invoke(db_path, "retries", "list")
    assert (result.exit_code, result.stdout) == (
        0,
        "no retry items in state pending, dead (add --all for closed ones)\n",
    )


def test_bad_state_is_refused(store, db_path):
    result = invoke(db_path, "retries", "list", "--state", "done")
    assert result.exit_code == 2
    assert "Invalid value for '--state'" in result.output


# --- show -------------------------------------------------------------------------------------


def test_show_prints_item_process_and_event_trail(store, db_path, four_states):
    result = invoke(db_path, "retries", "show", str(four_states["dead"]), "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert set(shown) == {"retry_item", "process", "events"}
    assert shown["retry_item"]["state"] == "dead"
    assert shown["process"]["pid"] == 40002
    assert shown["process"]["state"] == "dead"
    assert [e["kind"] for e in shown["events"]] == [
        "discovered",
        "attach_failed",
        "retry_scheduled",
        "attach_failed",
        "dead_lettered",
    ]
    table = invoke(db_path, "retries", "show", str(four_states["dead"]))
    assert table.exit_code == 0
    assert table.stdout.startswith("retry item\nFIELD")
    assert "\nevents (5)\n" in table.stdout


def test_show_unknown_id(store, db_path):
    result = invoke(db_path, "retries", "show", "99")
    assert (result.exit_code, result.output) == (1, "Error: retry item 99 does not exist\n")


# --- requeue ----------------------------------------------------------------------------------


def test_requeue_of_a_running_process(store, db_path, spawn):
    child = spawn(["sleep", "60"])
    process_id, retry_id = dead_item(store, live_candidate(child.pid))
    before = datetime.now(UTC)

    result = invoke(db_path, "retries", "requeue", str(retry_id))

    assert result.exit_code == 0, result.output
    assert result.stdout == f"retry item {retry_id} requeued: due now, attempts reset to 0\n"
    item = item_row(store, retry_id)
    assert (item.state, item.attempt, item.final_reason) == (RetryState.PENDING, 0, None)
    assert before <= item.next_attempt_at <= datetime.now(UTC)
    assert item.claimed_until is None
    process = process_row(store, process_id)
    assert process.state == ProcessState.RETRYING
    assert event_kinds(store, process_id)[-1] == EventKind.REQUEUED
    # The daemon's worker now finds it due.
    due = store.due_retries(datetime.now(UTC))
    assert [(d.retry_id, d.attempt) for d in due] == [(retry_id, 0)]


def test_requeue_of_an_exited_process_is_refused(store, db_path, spawn):
    child = spawn(["sleep", "60"])
    process_id, retry_id = dead_item(store, live_candidate(child.pid))
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)

    result = invoke(db_path, "retries", "requeue", str(retry_id))

    assert result.exit_code == 1
    assert result.output == (
        f"Error: retry item {retry_id} cannot be requeued: pid {child.pid} has exited\n"
    )
    item = item_row(store, retry_id)
    assert (item.state, item.attempt) == (RetryState.DEAD, 1)
    assert EventKind.REQUEUED not in event_kinds(store, process_id)


def test_requeue_refuses_a_recycled_pid(store, db_path, spawn):
    """Same pid, another start time: another process, never governed in its place."""
    child = spawn(["sleep", "60"])
    real = live_candidate(child.pid)
    stale = fake_candidate(child.pid, start_ticks=real.identity.start_ticks + 1)
    _, retry_id = dead_item(store, stale)
    result = invoke(db_path, "retries", "requeue", str(retry_id))
    assert result.exit_code == 1
    assert "has exited and now belongs to another process" in result.output
    assert item_row(store, retry_id).state == RetryState.DEAD


def test_requeue_all_dead_takes_the_running_and_skips_the_rest(store, db_path, spawn):
    child = spawn(["sleep", "60"])
    _, live_id = dead_item(store, live_candidate(child.pid))
    _, gone_id = dead_item(store, fake_candidate(40010))

    result = invoke(db_path, "retries", "requeue", "--all-dead")

    assert result.exit_code == 0, result.output
    assert result.stdout == f"requeued 1 retry items ({live_id}); skipped 1 whose process is gone\n"
    assert f"skipped: retry item {gone_id} cannot be requeued: pid 40010 has exited" in (
        result.stderr
    )
    assert item_row(store, live_id).state == RetryState.PENDING
    assert item_row(store, gone_id).state == RetryState.DEAD


def test_requeue_needs_exactly_one_target(store, db_path):
    for args in ((), ("7", "--all-dead")):
        result = invoke(db_path, "retries", "requeue", *args)
        assert result.exit_code == 2
        assert "give either a retry item ID or --all-dead" in result.output


def test_requeue_unknown_id(store, db_path):
    result = invoke(db_path, "retries", "requeue", "99")
    assert (result.exit_code, result.output) == (1, "Error: retry item 99 does not exist\n")


# --- discard ----------------------------------------------------------------------------------


def test_discard_cancels_a_pending_item(store, db_path):
    process_id, retry_id = pending_item(store, fake_candidate(40020))
    result = invoke(db_path, "retries", "discard", str(retry_id))
    assert (result.exit_code, result.stdout) == (0, f"retry item {retry_id} discarded\n")
    item = item_row(store, retry_id)
    assert (item.state, item.final_reason, item.next_attempt_at) == (
        RetryState.CANCELLED,
        "discarded by operator",
        None,
    )
    assert process_row(store, process_id).state == ProcessState.OBSERVED
    assert event_kinds(store, process_id)[-1] == EventKind.RETRY_CANCELLED
    assert store.due_retries(NOW + timedelta(days=1)) == []
    again = invoke(db_path, "retries", "discard", str(retry_id))
    assert (again.exit_code, again.stdout) == (
        0,
        f"retry item {retry_id} was already cancelled; nothing to do\n",
    )


def test_discard_a_dead_letter_and_refuse_a_succeeded_item(store, db_path, four_states):
    dead = invoke(db_path, "retries", "discard", str(four_states["dead"]))
    assert dead.exit_code == 0
    assert item_row(store, four_states["dead"]).state == RetryState.CANCELLED
    done = invoke(db_path, "retries", "discard", str(four_states["succeeded"]))
    assert done.exit_code == 1
    assert done.output == (
        f"Error: retry item {four_states['succeeded']} cannot be discarded: it succeeded "
        "(the process was attached)\n"
    )
    assert item_row(store, four_states["succeeded"]).state == RetryState.SUCCEEDED


def test_write_commands_never_create_a_database(tmp_path):
    missing = tmp_path / "none" / "ffrtmp.db"
    for args in (("requeue", "1"), ("discard", "1")):
        result = invoke(missing, "retries", *args)
        assert (result.exit_code, result.output) == (
            1,
            f"Error: database {missing} does not exist\n",
        )
    assert not missing.parent.exists()


def test_a_discarded_item_is_not_requeued_without_force(store, db_path, spawn):
    child = spawn(["sleep", "60"])
    process_id, retry_id = dead_item(store, live_candidate(child.pid))
    assert invoke(db_path, "retries", "discard", str(retry_id)).exit_code == 0

    refused = invoke(db_path, "retries", "requeue", str(retry_id))

    assert refused.exit_code == 1
    assert refused.output == (
        f"Error: retry item {retry_id} was discarded by an operator, which is for good; "
        "add --force to retry it all the same\n"
    )
    assert item_row(store, retry_id).state == RetryState.CANCELLED
    forced = invoke(db_path, "retries", "requeue", str(retry_id), "--force")
    assert forced.exit_code == 0, forced.output
    assert item_row(store, retry_id).state == RetryState.PENDING


def test_discard_all_dead_takes_the_actionable_dead_letters_only(store, db_path, four_states):
    process_id, closed_id = dead_item(store, fake_candidate(40030))
    store.record_exit(process_id, now=NOW, exit_code=0, exit_signal=None, reason=None)
    assert item_row(store, closed_id).closed_reason == "process exited"

    result = invoke(db_path, "retries", "discard", "--all-dead")

    assert (result.exit_code, result.stdout) == (
        0,
        f"discarded 1 dead letters ({four_states['dead']})\n",
    )
    assert item_row(store, four_states["dead"]).state == RetryState.CANCELLED
    assert item_row(store, four_states["pending"]).state == RetryState.PENDING
    assert item_row(store, closed_id).state == RetryState.DEAD  # history stays as it was
    assert invoke(db_path, "retries", "discard").exit_code == 2


def test_a_closed_dead_letter_is_history_not_actionable(store, db_path):
    process_id, retry_id = dead_item(store, fake_candidate(40031))
    assert store.retry_depths() == {"dead": 1}
    store.record_exit(process_id, now=NOW, exit_code=None, exit_signal=9, reason=None)
    assert store.retry_depths() == {}
    assert json.loads(invoke(db_path, "retries", "list", "--json").stdout) == []
    rows = json.loads(invoke(db_path, "retries", "list", "--all", "--json").stdout)
    assert [(r["id"], r["closed_reason"]) for r in rows] == [(retry_id, "process exited")]
    dead_only = json.loads(invoke(db_path, "retries", "list", "--state", "dead", "--json").stdout)
    assert dead_only == []
