"""The store's two kinds of transaction on a real SQLite file: writes take the write lock from
their start, reads take none and answer from the last committed state while another
connection holds it."""

from __future__ import annotations

import errno
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from candidates import make_candidate
from sqlalchemy import func, select

from ffrtmp.backoff import BackoffPolicy
from ffrtmp.errors import CANCEL_REASON_TARGET_EXITED, classify
from ffrtmp.models import RetryItem
from ffrtmp.states import RetryState

NOW = datetime.now(UTC).replace(microsecond=0)
TRANSIENT = classify(OSError(errno.EAGAIN, "Resource temporarily unavailable"))


def retrying_process(store) -> int:
    """A recorded process whose first attach failed: one pending retry item."""
    candidate = make_candidate(4242, 7, argv=("ffmpeg", "-i", "rtmp://in/x"))
    process_id, _ = store.register(candidate, job_id="auto-ffmpeg-4242-7", limits=None, now=NOW)
    outcome = store.record_attach_failure(
        process_id, TRANSIENT, now=NOW, retry_enabled=True, policy=BackoffPolicy(max_attempts=3)
    )
    assert outcome.state == RetryState.PENDING
    return process_id


def can_take_write_lock(db_path) -> bool:
    """Whether another connection gets BEGIN IMMEDIATE at once (no busy wait)."""
    other = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return False
    else:
        other.execute("ROLLBACK")
        return True
    finally:
        other.close()


def test_reads_answer_while_another_connection_holds_the_write_lock(store, db_path):
    process_id = retrying_process(store)
    store.record_health(
        now=NOW, run_id=None, status="healthy", reasons=[], counters={}, errors_by_type={}
    )
    due_at = store.next_retry_at()
    holder = sqlite3.connect(db_path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE retry_items SET state = 'dead', next_attempt_at = NULL")
        holder.execute("DELETE FROM health_snapshots")
        # Not committed yet: the store's reads see the committed state and do not wait.
        assert store.retry_depths() == {RetryState.PENDING: 1}
        assert store.next_retry_at() == due_at
        assert [due.process_id for due in store.due_retries(due_at)] == [process_id]
        assert [t.process_id for t in store.unfinished_processes()] == [process_id]
        assert store.last_health().status == "healthy"
        holder.execute("COMMIT")
    finally:
        holder.close()
    assert store.retry_depths() == {RetryState.DEAD: 1}
    assert store.next_retry_at() is None
    assert store.last_health() is None


def test_a_read_leaves_the_write_lock_free_and_a_write_takes_it_at_once(store, db_path):
    retrying_process(store)
    with store.reading() as s:
        assert s.scalar(select(func.count()).select_from(RetryItem)) == 1
        assert can_take_write_lock(db_path)
    with store.unit() as s:
        assert s.scalar(select(func.count()).select_from(RetryItem)) == 1
        assert not can_take_write_lock(db_path)
    assert can_take_write_lock(db_path)


def test_the_commit_failpoint_fails_reads_and_writes_alike(store):
    from ffrtmp import failpoints

    failpoints.configure("store.commit=EIO*2")
    with pytest.raises(OSError):
        store.retry_depths()
    with pytest.raises(OSError):
        store.record_scan(
            started_at=NOW,
            duration_ms=1.0,
            trigger="periodic",
            ok=True,
            seen=0,
            matched=0,
            new=0,
            unreadable=0,
            errors=0,
        )
    assert store.retry_depths() == {}
    assert store.due_retries(NOW + timedelta(days=1)) == []


def test_the_retry_item_of_a_process_that_ends_is_cancelled_as_target_exited(store):
    """The reason the store writes is the one the attacher's callers and the docs name
    (the pid_reused one: tests/daemon/test_watch.py, with a real reused pid)."""
    process_id = retrying_process(store)
    store.record_exit(
        process_id, now=NOW + timedelta(seconds=5), exit_code=0, exit_signal=None, reason=None
    )
    with store.unit() as s:
        ((state, final_reason),) = s.execute(select(RetryItem.state, RetryItem.final_reason))
    assert (state, final_reason) == (RetryState.CANCELLED, CANCEL_REASON_TARGET_EXITED)
