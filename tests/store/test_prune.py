"""Pruning finished history: what goes and what stays, dry runs, slices, batches that let the
daemon write in between, and `ffrtmp db prune`."""

from __future__ import annotations

import errno
from datetime import UTC, datetime, timedelta

import pytest
from candidates import make_candidate
from click.testing import CliRunner
from sqlalchemy import func, select, update

from ffrtmp.backoff import BackoffPolicy
from ffrtmp.cli import main
from ffrtmp.errors import classify
from ffrtmp.models import ErrorEvent, HealthSnapshot, Process, ProcessEvent, RetryItem, Scan
from ffrtmp.prune import TABLES, prune
from ffrtmp.states import ProcessState, RetryState

NOW = datetime.now(UTC)
DAY = 86400.0
RETENTION = 30 * DAY
EAGAIN = classify(OSError(errno.EAGAIN, "Resource temporarily unavailable"))
MODELS = {
    "retry_items": RetryItem,
    "process_events": ProcessEvent,
    "processes": Process,
    "error_events": ErrorEvent,
    "scans": Scan,
    "health_snapshots": HealthSnapshot,
}


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def register(store, pid: int, days: float, state=ProcessState.DISCOVERED) -> int:
    candidate = make_candidate(pid, argv=("ffmpeg",))
    process_id, _ = store.register(
        candidate, job_id=f"auto-ffmpeg-{pid}", limits=None, now=ago(days), state=state
    )
    return process_id


def fail(store, process_id: int, days: float, policy=None) -> None:
    store.record_attach_failure(
        process_id, EAGAIN, now=ago(days), policy=policy or BackoffPolicy(), retry_enabled=True
    )


def exit_(store, process_id: int, days: float) -> None:
    store.record_exit(process_id, now=ago(days), exit_code=0, exit_signal=None, reason=None)


def table_counts(store) -> dict[str, int]:
    with store.unit() as s:
        return {t: s.scalar(select(func.count()).select_from(m)) for t, m in MODELS.items()}


def events_of(store, *process_ids: int) -> int:
    with store.unit() as s:
        return s.scalar(select(func.count()).where(ProcessEvent.process_id.in_(process_ids)))


@pytest.fixture
def history(store):
    ids = {}
    # Old, exited, its retry cancelled by the exit: goes, with its events and its retry item.
    ids["old_exited"] = register(store, 70001, 40)
    fail(store, ids["old_exited"], 40)
    exit_(store, ids["old_exited"], 39)
    # Old and skipped, never had an exit time: goes by its discovery time.
    ids["old_skipped"] = register(store, 70002, 40, ProcessState.SKIPPED)
    # Exited yesterday: stays.
    ids["recent"] = register(store, 70003, 3)
    exit_(store, ids["recent"], 1)
    # Old dead letter: stays unless include_dead.
    ids["old_dead"] = register(store, 70004, 40)
    fail(store, ids["old_dead"], 40, BackoffPolicy(max_attempts=1))
    store.record_attach_failure(
        ids["old_dead"],
        EAGAIN,
        now=ago(39),
        policy=BackoffPolicy(max_attempts=1),
        retry_enabled=True,
        attempt=1,
    )
    exit_(store, ids["old_dead"], 38)
    # An old finished process that still has a pending retry item (a state the daemon should
    # never leave, made by hand): the pending item and the process both stay, always.
    ids["old_pending"] = register(store, 70005, 40)
    fail(store, ids["old_pending"], 40)
    with store.unit() as s:
        s.execute(
            update(Process)
            .where(Process.id == ids["old_pending"])
            .values(state=ProcessState.EXITED, exited_at=ago(39))
        )
    for days in (40, 1):
        store.record_error("scan", EAGAIN, now=ago(days))
        store.record_scan(
            started_at=ago(days),
            duration_ms=3.0,
            trigger="poll",
            ok=True,
            seen=10,
            matched=0,
            new=0,
            unreadable=0,
            errors=0,
        )
    for days in (40, 35, 1):
        store.record_health(
            now=ago(days), run_id=None, status="healthy", reasons=[], counters={}, errors_by_type={}
        )
    with store.unit() as s:
        states = dict(s.execute(select(RetryItem.process_id, RetryItem.state)).all())
    assert states == {
        ids["old_exited"]: RetryState.CANCELLED,
        ids["old_dead"]: RetryState.DEAD,
        ids["old_pending"]: RetryState.PENDING,
    }
    return ids


def test_prune_removes_old_finished_history_and_keeps_the_rest(store, history):
    before = table_counts(store)
    gone_events = events_of(store, history["old_exited"], history["old_skipped"])
    assert gone_events >= 6

    removed = prune(store, RETENTION, NOW)

    assert removed == {
        "retry_items": 1,
        "process_events": gone_events,
        "processes": 2,
        "error_events": 5,  # attach errors: old_exited 1, old_dead 2, old_pending 1; a scan error
        "scans": 1,
        "health_snapshots": 2,
    }
    after = table_counts(store)
    assert {t: before[t] - after[t] for t in TABLES} == removed
    with store.unit() as s:
        left = set(s.scalars(select(Process.id)))
        items = dict(s.execute(select(RetryItem.process_id, RetryItem.state)).all())
    assert left == {history["recent"], history["old_dead"], history["old_pending"]}
    assert items == {history["old_dead"]: "dead", history["old_pending"]: "pending"}
    assert events_of(store, history["old_exited"], history["old_skipped"]) == 0
    assert prune(store, RETENTION, NOW) == dict.fromkeys(TABLES, 0)  # nothing left to do


def test_include_dead_removes_dead_letters_but_never_pending(store, history):
    removed = prune(store, RETENTION, NOW, include_dead=True)
    assert (removed["retry_items"], removed["processes"]) == (2, 3)
    with store.unit() as s:
        assert set(s.scalars(select(Process.id))) == {history["recent"], history["old_pending"]}
        assert list(s.scalars(select(RetryItem.state))) == [RetryState.PENDING]


def test_error_events_of_a_pruned_process_lose_only_their_link(store, history):
    store.record_error("attach", EAGAIN, now=ago(1), process_id=history["old_skipped"])
    prune(store, RETENTION, NOW)
    with store.unit() as s:
        recent = s.scalars(select(ErrorEvent).where(ErrorEvent.occurred_at > ago(2))).all()
    assert [(e.operation, e.process_id) for e in recent] == [("scan", None), ("attach", None)]


def test_dry_run_counts_exactly_and_changes_nothing(store, history):
    before = table_counts(store)
    counted = prune(store, RETENTION, NOW, dry_run=True)
    assert table_counts(store) == before
    assert prune(store, RETENTION, NOW) == counted
    assert counted["processes"] == 2


def test_slices_stop_and_a_later_call_carries_on(store, history):
    expected = prune(store, RETENTION, NOW, dry_run=True)
    first = prune(store, RETENTION, NOW, batch=1, max_batches=2)
    assert sum(first.values()) == 1  # one batch of one retry item, one finding none left
    assert prune(store, RETENTION, NOW, should_stop=lambda: True) == dict.fromkeys(TABLES, 0)
    rest = prune(store, RETENTION, NOW, batch=1)
    assert {t: first[t] + rest[t] for t in TABLES} == expected


def test_the_daemon_can_write_between_batches(store, history):
    """Each batch commits before the next begins: a write from another connection (the daemon)
    in between succeeds at once instead of waiting for the whole prune."""
    from ffrtmp.database import open_for_writing
    from ffrtmp.store import Store

    daemon = Store(open_for_writing(store.engine.url.database))
    writes: list[str] = []

    def daemon_writes(table: str, rows: int) -> None:
        daemon.record_scan(
            started_at=NOW,
            duration_ms=1.0,
            trigger="poll",
            ok=True,
            seen=1,
            matched=0,
            new=0,
            unreadable=0,
            errors=0,
        )
        writes.append(table)

    try:
        prune(store, RETENTION, NOW, batch=1, on_batch=daemon_writes)
    finally:
        daemon.close()
    assert len(writes) >= 7
    with store.unit() as s:
        assert s.scalar(select(func.count()).where(Scan.started_at == NOW)) == len(writes)


def test_bad_arguments():
    with pytest.raises(ValueError, match="retention must not be negative"):
        prune(None, -1, NOW)
    with pytest.raises(ValueError, match="batch size must be at least 1"):
        prune(None, 1, NOW, batch=0)


# --- ffrtmp db prune --------------------------------------------------------------------------


def run(db_path, *args: str):
    return CliRunner().invoke(main, ["db", "prune", *args, "--db", str(db_path)])


def test_cli_dry_run_then_prune(store, db_path, history):
    before = table_counts(store)
    dry = run(db_path, "--dry-run")
    assert dry.exit_code == 0, dry.output
    events = events_of(store, history["old_exited"], history["old_skipped"])
    summary = (
        f"1 retry_items, {events} process_events, 2 processes, 5 error_events, 1 scans, "
        "2 health_snapshots"
    )
    total = 1 + events + 2 + 5 + 1 + 2
    assert dry.stdout == f"would remove {total} rows older than 30d: {summary}\n"
    assert table_counts(store) == before
    real = run(db_path, "--older-than", "30d")
    assert real.stdout == f"removed {total} rows older than 30d: {summary}\n"  # no progress bar
    assert run(db_path).stdout == "nothing older than 30d to remove\n"
    dead = run(db_path, "--include-dead")
    assert dead.stdout.startswith("removed ")
    assert "1 retry_items" in dead.stdout and "1 processes" in dead.stdout


def test_cli_bad_duration_and_missing_database(tmp_path, store, db_path):
    bad = run(db_path, "--older-than", "a month")
    assert bad.exit_code == 2
    assert "Invalid value for '--older-than': 'a month' is not a duration" in bad.output
    missing = tmp_path / "none" / "ffrtmp.db"
    result = run(missing)
    assert (result.exit_code, result.output) == (1, f"Error: database {missing} does not exist\n")
    assert not missing.parent.exists()
