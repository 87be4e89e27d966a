"""The outbox (app/outbox.py) against a real SQLite store whose commits fail through the
`store.commit` failpoint (an OSError, as a failing disk raises), and the health rules for a
store that refuses writes."""

from __future__ import annotations

import errno
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from ffrtmp import failpoints
from ffrtmp.clock import Moment
from ffrtmp.health import HealthThresholds, HealthTracker
from ffrtmp.outbox import RETRY_FIRST_S, Outbox, is_store_failure
from ffrtmp.states import HealthStatus

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def at(seconds: float) -> Moment:
    """A moment of the test: `seconds` on both clocks."""
    return Moment(seconds, seconds)


def record_scan(store, n: int):
    return lambda: store.record_scan(
        started_at=T0 + timedelta(seconds=n),
        duration_ms=float(n),
        trigger="periodic",
        ok=True,
        seen=n,
        matched=0,
        new=0,
        unreadable=0,
        errors=0,
    )


def scans(db_path) -> list[int]:
    con = sqlite3.connect(db_path)
    try:
        return [row[0] for row in con.execute("SELECT seen FROM scans ORDER BY id")]
    finally:
        con.close()


def test_refused_writes_are_kept_in_order_and_written_once_the_store_takes_them(store, db_path):
    results: list[BaseException | None] = []
    outbox = Outbox(on_result=results.append)
    assert outbox.write("scan 1", record_scan(store, 1), now=at(0.0))
    failpoints.configure("store.commit=ENOSPC*inf")
    assert not outbox.write("scan 2", record_scan(store, 2), now=at(1.0))
    assert not outbox.write("scan 3", record_scan(store, 3), now=at(1.1))  # queued, not tried
    assert len(outbox) == 2
    assert not outbox.flush(now=at(1.5))  # within the pause after the refusal: not tried
    assert not outbox.flush(now=at(1.0 + RETRY_FIRST_S))  # tried, refused again
    failpoints.configure("")
    assert outbox.flush(now=at(1.0 + RETRY_FIRST_S + 2 * RETRY_FIRST_S))
    assert scans(db_path) == [1, 2, 3]
    assert len(outbox) == 0 and outbox.next_try_at is None
    assert [r is None for r in results] == [True, False, False, True, True]
    assert all(isinstance(r, OSError) and r.errno == errno.ENOSPC for r in results[1:3])


def test_its_pauses_run_on_the_monotonic_reading_whatever_the_wall_clock_says(store, db_path):
    """A refusal at a moment whose wall clock then steps a day ahead must not put the next try
    a day off, nor make it due at once."""
    outbox = Outbox()
    failpoints.configure("store.commit=ENOSPC*1")
    refused_at = Moment(100.0, 100.0)
    assert not outbox.write("scan 1", record_scan(store, 1), now=refused_at)
    a_day_ahead = Moment(100.0, 100.0 + 86_400)  # the wall clock stepped; no time passed
    assert not outbox.flush(now=a_day_ahead)  # the pause after the refusal: not over
    assert outbox.next_try_at.seconds_since(refused_at) == RETRY_FIRST_S
    assert outbox.flush(now=Moment(100.0 + RETRY_FIRST_S, 0.0))  # over on the monotonic clock
    assert scans(db_path) == [1]


def test_a_float_is_no_moment(store):
    """Mixing the bases is a type error: a bare float is refused where a moment goes."""
    outbox = Outbox()
    failpoints.configure("store.commit=ENOSPC*1")
    assert not outbox.write("scan 1", record_scan(store, 1), now=at(0.0))
    with pytest.raises(TypeError):
        outbox.flush(now=5.0)
    assert len(outbox) == 1


def test_a_queued_write_failing_for_another_reason_is_dropped_not_blocking(store, db_path):
    outbox = Outbox()
    failpoints.configure("store.commit=EIO*1")
    assert not outbox.write("scan 1", record_scan(store, 1), now=at(0.0))

    def broken() -> None:
        raise ValueError("a value SQLite refuses")

    outbox.defer("a broken write", broken)
    outbox.defer("scan 2", record_scan(store, 2))
    assert outbox.flush(now=at(10.0))
    assert scans(db_path) == [1, 2]
    assert outbox.dropped == 1


def test_what_counts_as_a_store_failure(db_path, store):
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorcode = 5
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13
    syntax = sqlite3.OperationalError('near "SELEC": syntax error')
    syntax.sqlite_errorcode = 1
    assert is_store_failure(locked) and is_store_failure(full)
    assert not is_store_failure(syntax)
    assert is_store_failure(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_store_failure(ValueError("surrogates not allowed"))


def test_a_refusing_store_makes_health_degraded_then_unhealthy_until_a_write_succeeds():
    thresholds = HealthThresholds(stale_scan_after=120)
    health = HealthTracker(thresholds, started_at=at(1000.0))
    health.record_scan(True, at(1000.0))
    health.record_store_write("database or disk is full [resource]", at(1001.0))
    report = health.evaluate(at(1002.0))
    assert report.status == HealthStatus.DEGRADED
    assert report.reasons == (
        "database cannot be written for 1s: database or disk is full [resource]",
    )
    health.record_scan(True, at(1100.0))
    health.record_store_write("database or disk is full [resource]", at(1100.0))  # since stays
    assert health.evaluate(at(1122.0)).status == HealthStatus.UNHEALTHY
    health.record_store_write(None, at(1123.0))
    assert health.evaluate(at(1123.0)).status == HealthStatus.HEALTHY
