"""Health rules of ffrtmp.health: boundaries, ageing by time alone, resets, snapshots, restore."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ffrtmp import defaults
from ffrtmp.clock import Moment
from ffrtmp.health import (
    SEVERITY,
    HealthThresholds,
    HealthTracker,
    SnapshotSchedule,
    assess,
)
from ffrtmp.states import ErrorType, HealthStatus

# A moment whose readings are an epoch time; the rules only look at differences.
T0 = Moment(1_700_000_000.0, 1_700_000_000.0)


def tracker(**thresholds) -> HealthTracker:
    return HealthTracker(HealthThresholds(**thresholds), started_at=T0)


def scans(health: HealthTracker, results: str, start: Moment = T0) -> Moment:
    """Record one scan per character ('o' ok, 'x' failed), a second apart; return the last time."""
    now = start
    for i, mark in enumerate(results):
        now = start + i
        health.record_scan(mark == "o", now)
    return now


def attaches(health: HealthTracker, results: str, now: Moment = T0) -> None:
    for mark in results:
        health.record_attach(mark == "o", now)


def test_thresholds_come_from_the_defaults_module():
    t = HealthThresholds()
    assert (
        t.degraded_scan_failures,
        t.degraded_attach_failures,
        t.unhealthy_scan_failures,
        t.stale_scan_after,
    ) == (
        defaults.HEALTH_DEGRADED_SCAN_FAILURES,
        defaults.HEALTH_DEGRADED_ATTACH_FAILURES,
        defaults.HEALTH_UNHEALTHY_SCAN_FAILURES,
        defaults.HEALTH_STALE_SCAN_SECONDS,
    )


def test_fresh_tracker_is_healthy():
    report = tracker().evaluate(T0 + 1)
    assert (report.status, report.reasons) == (HealthStatus.HEALTHY, ())
    assert report.seconds_since_last_successful_scan is None
    assert (report.total_scans, report.consecutive_scan_failures) == (0, 0)


@pytest.mark.parametrize(
    ("failures", "expected"),
    [
        (2, HealthStatus.HEALTHY),
        (3, HealthStatus.DEGRADED),
        (4, HealthStatus.DEGRADED),
        (5, HealthStatus.UNHEALTHY),
    ],
)
def test_scan_failure_boundaries(failures, expected):
    health = tracker()
    now = scans(health, "o" + "x" * failures)
    report = health.evaluate(now)
    assert report.status is expected
    assert report.consecutive_scan_failures == failures


def test_scan_failure_reasons_name_the_count_and_threshold():
    health = tracker()
    assert health.evaluate(scans(health, "xxx")).reasons == (
        "3 consecutive scan failures (threshold 3)",
    )
    assert health.evaluate(scans(health, "xx", start=T0 + 3)).reasons == (
        "5 consecutive scan failures (threshold 5)",
    )


@pytest.mark.parametrize(
    ("failures", "expected"), [(9, HealthStatus.HEALTHY), (10, HealthStatus.DEGRADED)]
)
def test_attach_failure_boundary(failures, expected):
    health = tracker()
    health.record_scan(True, T0)
    attaches(health, "o" + "x" * failures)
    report = health.evaluate(T0 + 1)
    assert report.status is expected
    assert report.consecutive_attach_failures == failures
    if expected is HealthStatus.DEGRADED:
        assert report.reasons == ("10 consecutive attach failures (threshold 10)",)


def test_attach_failures_alone_never_make_it_unhealthy():
    health = tracker()
    health.record_scan(True, T0)
    attaches(health, "x" * 1000)
    assert health.evaluate(T0 + 1).status is HealthStatus.DEGRADED


def test_staleness_by_time_alone():
    health = tracker()
    health.record_scan(True, T0)
    assert health.evaluate(T0 + 119).status is HealthStatus.HEALTHY
    assert health.evaluate(T0 + 120).status is HealthStatus.HEALTHY  # "more than" 120 s
    report = health.evaluate(T0 + 121)
    assert report.status is HealthStatus.UNHEALTHY
    assert report.seconds_since_last_successful_scan == 121.0
    assert report.reasons == ("last successful scan 121s ago (threshold 120s)",)


def test_failed_scans_do_not_refresh_staleness():
    health = tracker()
    health.record_scan(True, T0)
    health.record_scan(False, T0 + 100)
    report = health.evaluate(T0 + 130)
    assert report.status is HealthStatus.UNHEALTHY
    assert report.last_scan_at == T0 + 100
    assert report.last_successful_scan_at == T0
    assert report.reasons == ("last successful scan 130s ago (threshold 120s)",)


def test_stuck_before_the_first_scan_becomes_unhealthy():
    health = tracker()
    assert health.evaluate(T0 + 120).status is HealthStatus.HEALTHY
    report = health.evaluate(T0 + 130.5)
    assert report.status is HealthStatus.UNHEALTHY
    assert report.seconds_since_last_successful_scan is None
    assert report.reasons == ("no successful scan in the 130.5s since start (threshold 120s)",)


def test_a_successful_scan_resets_the_scan_counter_and_recovers():
    health = tracker()
    now = scans(health, "xxxxx")
    assert health.evaluate(now).status is HealthStatus.UNHEALTHY
    health.record_scan(True, now + 1)
    report = health.evaluate(now + 1)
    assert report.status is HealthStatus.HEALTHY
    assert report.consecutive_scan_failures == 0
    assert (report.total_scans, report.total_scan_failures) == (6, 5)


def test_a_successful_attach_resets_the_attach_counter():
    health = tracker()
    health.record_scan(True, T0)
    attaches(health, "x" * 10 + "o")
    report = health.evaluate(T0 + 1)
    assert report.status is HealthStatus.HEALTHY
    assert report.consecutive_attach_failures == 0
    assert (report.total_attaches, report.total_attach_failures) == (11, 10)


def test_every_applying_rule_is_a_reason():
    health = tracker()
    scans(health, "xxxxx")
    attaches(health, "x" * 10)
    report = health.evaluate(T0 + 200)
    assert report.status is HealthStatus.UNHEALTHY
    assert report.reasons == (
        "5 consecutive scan failures (threshold 5)",
        "no successful scan in the 200s since start (threshold 120s)",
        "10 consecutive attach failures (threshold 10)",
    )


def test_errors_are_counted_by_type_and_the_report_holds_a_copy():
    health = tracker()
    for error_type in (ErrorType.TRANSIENT, ErrorType.TRANSIENT, ErrorType.RESOURCE):
        health.record_error(error_type)
    report = health.evaluate(T0)
    assert report.errors_by_type == {"transient": 2, "resource": 1}
    report.errors_by_type["transient"] = 99
    assert health.evaluate(T0).errors_by_type["transient"] == 2


def test_a_clock_stepped_backwards_does_not_report_negative_age():
    health = tracker()
    health.record_scan(True, T0)
    report = health.evaluate(T0 - 50)
    assert report.seconds_since_last_successful_scan == 0.0
    assert report.status is HealthStatus.HEALTHY


def test_as_dict_is_plain():
    health = tracker()
    scans(health, "xxx")
    data = health.evaluate(T0 + 5).as_dict()
    assert data["status"] == "degraded" and type(data["status"]) is str
    assert data["reasons"] == ["3 consecutive scan failures (threshold 3)"]
    assert data["total_scan_failures"] == 3


def test_restore_resumes_the_totals_but_not_this_runs_counters():
    health = HealthTracker.restore(
        HealthThresholds(),
        started_at=T0,
        total_scans=40,
        total_scan_failures=7,
        total_attaches=12,
        total_attach_failures=3,
        errors_by_type={"transient": 3},
    )
    health.record_scan(False, T0 + 1)
    health.record_attach(True, T0 + 1)
    health.record_error("transient")
    report = health.evaluate(T0 + 2)
    assert (report.total_scans, report.total_scan_failures) == (41, 8)
    assert (report.total_attaches, report.total_attach_failures) == (13, 3)
    assert report.errors_by_type == {"transient": 4}
    assert (report.consecutive_scan_failures, report.last_successful_scan_at) == (1, None)
    assert report.status is HealthStatus.HEALTHY


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"total_scans": -1}, "total_scans must be a non-negative integer, not -1"),
        ({"total_scans": 1, "total_scan_failures": 2}, "total_scan_failures (2) exceeds"),
        ({"errors_by_type": {"transient": -1}}, "errors_by_type['transient'] must be"),
    ],
)
def test_restore_rejects_impossible_totals(kwargs, message):
    with pytest.raises(ValueError) as info:
        HealthTracker.restore(HealthThresholds(), T0, **kwargs)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"degraded_scan_failures": 0},
            "degraded_scan_failures must be at least 1, not 0",
        ),
        (
            {"degraded_attach_failures": 2.5},
            "degraded_attach_failures must be a whole number, not 2.5",
        ),
        (
            {"degraded_scan_failures": 6},
            "unhealthy_scan_failures must not be below degraded_scan_failures (6), not 5",
        ),
        (
            {"stale_scan_after": 0},
            "stale_scan_after must be a positive duration, not 0",
        ),
        (
            {"stale_scan_after": float("inf")},
            "stale_scan_after must be a positive duration, not inf",
        ),
    ],
)
def test_thresholds_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError) as info:
        HealthThresholds(**kwargs)
    assert str(info.value) == message


class TestSnapshotSchedule:
    def test_first_evaluation_is_due(self):
        assert SnapshotSchedule().due(tracker().evaluate(T0), T0) is True

    def test_due_on_interval_only_while_status_is_unchanged(self):
        health, schedule = tracker(), SnapshotSchedule(interval=60.0)
        health.record_scan(True, T0)
        schedule.mark(health.evaluate(T0), T0)
        health.record_scan(True, T0 + 10)
        assert schedule.due(health.evaluate(T0 + 59.9), T0 + 59.9) is False
        assert schedule.due(health.evaluate(T0 + 60), T0 + 60) is True
        schedule.mark(health.evaluate(T0 + 60), T0 + 60)
        assert schedule.due(health.evaluate(T0 + 61), T0 + 61) is False

    def test_due_as_soon_as_the_status_changes(self):
        health, schedule = tracker(), SnapshotSchedule(interval=60.0)
        health.record_scan(True, T0)
        schedule.mark(health.evaluate(T0), T0)
        scans(health, "xxx", start=T0 + 1)
        assert schedule.due(health.evaluate(T0 + 3), T0 + 3) is True
        schedule.mark(health.evaluate(T0 + 3), T0 + 3)
        assert schedule.due(health.evaluate(T0 + 4), T0 + 4) is False

    def test_due_when_time_alone_turns_it_unhealthy(self):
        health, schedule = tracker(), SnapshotSchedule(interval=600.0)
        health.record_scan(True, T0)
        schedule.mark(health.evaluate(T0), T0)
        assert schedule.due(health.evaluate(T0 + 100), T0 + 100) is False
        assert schedule.due(health.evaluate(T0 + 121), T0 + 121) is True

    def test_due_after_the_clock_steps_backwards(self):
        health, schedule = tracker(), SnapshotSchedule(interval=60.0)
        schedule.mark(health.evaluate(T0), T0)
        assert schedule.due(health.evaluate(T0 - 3600), T0 - 3600) is True

    @pytest.mark.parametrize("interval", [0, -1.0, float("nan")])
    def test_rejects_a_bad_interval(self, interval):
        with pytest.raises(ValueError, match="snapshot_interval must be a positive duration"):
            SnapshotSchedule(interval)


counts = st.integers(min_value=0, max_value=50)
ages = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@st.composite
def thresholds(draw):
    degraded_scan = draw(st.integers(min_value=1, max_value=20))
    return HealthThresholds(
        degraded_scan_failures=degraded_scan,
        degraded_attach_failures=draw(st.integers(min_value=1, max_value=20)),
        unhealthy_scan_failures=draw(st.integers(min_value=degraded_scan, max_value=30)),
        stale_scan_after=draw(st.floats(min_value=0.001, max_value=1e5, allow_nan=False)),
    )


@given(
    thresholds=thresholds(),
    scan_failures=st.tuples(counts, counts),
    attach_failures=st.tuples(counts, counts),
    age=st.tuples(ages, ages),
)
def test_property_status_is_monotone_in_the_failure_counters(
    thresholds, scan_failures, attach_failures, age
):
    low = assess(thresholds, min(scan_failures), min(attach_failures), min(age))[0]
    high = assess(thresholds, max(scan_failures), max(attach_failures), max(age))[0]
    assert SEVERITY[low] <= SEVERITY[high]


@given(results=st.lists(st.booleans(), max_size=40), attach_results=st.lists(st.booleans()))
def test_property_tracker_matches_a_model(results, attach_results):
    health = tracker()
    for i, ok in enumerate(results):
        health.record_scan(ok, T0 + i)
    for ok in attach_results:
        health.record_attach(ok, T0)
    now = T0 + len(results)
    report = health.evaluate(now)

    def trailing_failures(seq):
        count = 0
        for ok in reversed(seq):
            if ok:
                break
            count += 1
        return count

    scan_streak, attach_streak = trailing_failures(results), trailing_failures(attach_results)
    assert report.consecutive_scan_failures == scan_streak
    assert report.consecutive_attach_failures == attach_streak
    assert report.total_scan_failures == results.count(False)
    assert report.total_attach_failures == attach_results.count(False)
    successes = [T0 + i for i, ok in enumerate(results) if ok]
    stale = now.seconds_since(successes[-1] if successes else T0) > 120
    if scan_streak >= 5 or stale:
        expected = HealthStatus.UNHEALTHY
    elif scan_streak >= 3 or attach_streak >= 10:
        expected = HealthStatus.DEGRADED
    else:
        expected = HealthStatus.HEALTHY
    assert report.status is expected


def test_status_since_moves_on_each_change_and_each_change_is_one_line(caplog):
    import logging

    health = tracker(degraded_scan_failures=2, unhealthy_scan_failures=3)
    caplog.set_level(logging.INFO, logger="ffrtmp.health")
    assert health.evaluate(T0 + 1).status_since == T0  # the first status dates from the start
    scans(health, "xx", start=T0 + 10)
    degraded = health.evaluate(T0 + 12)
    assert (degraded.status, degraded.status_since) == (HealthStatus.DEGRADED, T0 + 12)
    assert health.evaluate(T0 + 13).status_since == T0 + 12  # no change, no new time
    scans(health, "o", start=T0 + 20)
    healthy = health.evaluate(T0 + 21)
    assert (healthy.status, healthy.status_since) == (HealthStatus.HEALTHY, T0 + 21)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("WARNING", "health: healthy -> degraded (2 consecutive scan failures (threshold 2))"),
        ("INFO", "health: degraded -> healthy (no failure rule applies any more)"),
    ]


def test_the_last_successful_attach_is_reported_and_restored():
    health = tracker()
    attaches(health, "x", now=T0 + 1)
    assert health.evaluate(T0 + 2).last_successful_attach_at is None
    attaches(health, "ox", now=T0 + 3)
    assert health.evaluate(T0 + 4).last_successful_attach_at == T0 + 3
    again = HealthTracker.restore(HealthThresholds(), T0 + 10, last_successful_attach_at=T0 + 3)
    assert again.evaluate(T0 + 11).as_dict()["last_successful_attach_at"] == (T0 + 3).wall


def test_a_snapshot_is_due_when_a_consecutive_counter_changes():
    health = tracker(degraded_attach_failures=10)
    schedule = SnapshotSchedule(interval=300)
    report = health.evaluate(T0)
    schedule.mark(report, T0)
    assert not schedule.due(health.evaluate(T0 + 1), T0 + 1)
    attaches(health, "x", now=T0 + 2)
    changed = health.evaluate(T0 + 2)
    assert changed.status == HealthStatus.HEALTHY  # same status, yet due
    assert schedule.due(changed, T0 + 2)
    schedule.mark(changed, T0 + 2)
    assert not schedule.due(health.evaluate(T0 + 3), T0 + 3)
