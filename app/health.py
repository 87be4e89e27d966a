"""The daemon's health, judged from its scan and attach results and from the passage of time.

Unhealthy: at least `unhealthy_scan_failures` consecutive scan failures, or more than
`stale_scan_after` seconds since the last successful scan (counted from the daemon's start
while no scan has succeeded yet, so a daemon stuck before its first scan turns unhealthy too).
Degraded: at least `degraded_scan_failures` consecutive scan failures, or at least
`degraded_attach_failures` consecutive attach failures.
Healthy: otherwise. Any success resets its consecutive counter.

The store is an input too: a write the database refused (locked past the busy timeout, a full
disk) makes the daemon degraded with the reason "database cannot be written", and unhealthy
once writes have failed for longer than `stale_scan_after`; one committed write ends it.
Other problems a part of the daemon reports (`set_problem`: an HTTP endpoint it cannot bind)
make it degraded, with the part's own reason, until the part clears it.

Health is recomputed on every `evaluate(now)`, so it ages without any event. Times are moments
(ffrtmp.clock.Moment) passed in by the caller, so tests control them: ages are measured on their
monotonic readings, and what is stored is their wall readings.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass

from ffrtmp import defaults
from ffrtmp.clock import Moment
from ffrtmp.settings import Invalid, InvalidSetting, duration, setting, validate, whole_number
from ffrtmp.states import HealthStatus

log = logging.getLogger(__name__)

SNAPSHOT_INTERVAL = duration()  # the kind of HealthSettings.snapshot_interval, checked here too
SEVERITY = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.UNHEALTHY: 2}


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    degraded_scan_failures: int = setting(
        "degraded_scan_failures", whole_number(1), default=defaults.HEALTH_DEGRADED_SCAN_FAILURES
    )
    degraded_attach_failures: int = setting(
        "degraded_attach_failures",
        whole_number(1),
        default=defaults.HEALTH_DEGRADED_ATTACH_FAILURES,
    )
    unhealthy_scan_failures: int = setting(
        "unhealthy_scan_failures", whole_number(1), default=defaults.HEALTH_UNHEALTHY_SCAN_FAILURES
    )
    stale_scan_after: float = setting(
        "stale_scan_after", duration(), default=defaults.HEALTH_STALE_SCAN_SECONDS
    )

    def __post_init__(self) -> None:
        validate(self)
        if self.unhealthy_scan_failures < self.degraded_scan_failures:
            raise InvalidSetting(
                "unhealthy_scan_failures",
                f"must not be below degraded_scan_failures ({self.degraded_scan_failures}), "
                f"not {self.unhealthy_scan_failures}",
            )


@dataclass(frozen=True)
class HealthReport:
    """seconds_since_last_successful_scan is None while no scan has succeeded; the staleness
    rule then counts from started_at, and `reasons` says so."""

    status: HealthStatus
    reasons: tuple[str, ...]
    evaluated_at: Moment
    started_at: Moment
    last_scan_at: Moment | None
    last_successful_scan_at: Moment | None
    seconds_since_last_successful_scan: float | None
    consecutive_scan_failures: int
    consecutive_attach_failures: int
    total_scans: int
    total_scan_failures: int
    total_attaches: int
    total_attach_failures: int
    errors_by_type: dict[str, int]
    # Since when and why writes to the database fail; None while they work.
    store_failing_since: Moment | None = None
    store_failure: str | None = None
    # The status by the scan and attach rules alone: whether the loop itself works. systemd's
    # watchdog goes by it, so a refusing database never gets a governing daemon restarted
    # (which would lose the writes it keeps for the database).
    loop_status: HealthStatus | None = None
    status_since: Moment | None = None  # when this status began (this run's start at first)
    last_successful_attach_at: Moment | None = None

    def as_dict(self) -> dict:
        """JSON-ready: moments as their wall times (epoch seconds)."""
        return {
            "status": self.status.value,
            "reasons": list(self.reasons),
            "evaluated_at": _wall(self.evaluated_at),
            "started_at": _wall(self.started_at),
            "last_scan_at": _wall(self.last_scan_at),
            "last_successful_scan_at": _wall(self.last_successful_scan_at),
            "seconds_since_last_successful_scan": self.seconds_since_last_successful_scan,
            "consecutive_scan_failures": self.consecutive_scan_failures,
            "consecutive_attach_failures": self.consecutive_attach_failures,
            "total_scans": self.total_scans,
            "total_scan_failures": self.total_scan_failures,
            "total_attaches": self.total_attaches,
            "total_attach_failures": self.total_attach_failures,
            "errors_by_type": dict(self.errors_by_type),
            "store_failing_since": _wall(self.store_failing_since),
            "store_failure": self.store_failure,
            "status_since": _wall(self.status_since),
            "last_successful_attach_at": _wall(self.last_successful_attach_at),
        }


def _wall(moment: Moment | None) -> float | None:
    return None if moment is None else moment.wall


def assess(
    thresholds: HealthThresholds,
    consecutive_scan_failures: int,
    consecutive_attach_failures: int,
    seconds_without_successful_scan: float,
    ever_scanned_successfully: bool = True,
) -> tuple[HealthStatus, tuple[str, ...]]:
    """The status and the reasons for it; every rule that applies gives a reason."""
    t = thresholds
    unhealthy: list[str] = []
    degraded: list[str] = []
    scans = consecutive_scan_failures
    if scans >= t.unhealthy_scan_failures:
        unhealthy.append(
            f"{scans} consecutive scan failures (threshold {t.unhealthy_scan_failures})"
        )
    elif scans >= t.degraded_scan_failures:
        degraded.append(f"{scans} consecutive scan failures (threshold {t.degraded_scan_failures})")
    if seconds_without_successful_scan > t.stale_scan_after:
        age, limit = _seconds(seconds_without_successful_scan), _seconds(t.stale_scan_after)
        if ever_scanned_successfully:
            unhealthy.append(f"last successful scan {age} ago (threshold {limit})")
        else:
            unhealthy.append(f"no successful scan in the {age} since start (threshold {limit})")
    attaches = consecutive_attach_failures
    if attaches >= t.degraded_attach_failures:
        degraded.append(
            f"{attaches} consecutive attach failures (threshold {t.degraded_attach_failures})"
        )
    if unhealthy:
        return HealthStatus.UNHEALTHY, tuple(unhealthy + degraded)
    if degraded:
        return HealthStatus.DEGRADED, tuple(degraded)
    return HealthStatus.HEALTHY, ()


class HealthTracker:
    """Counts scan and attach results; thread-safe, since the daemon records from its loop and
    the HTTP server evaluates from its own thread."""

    def __init__(self, thresholds: HealthThresholds, started_at: Moment) -> None:
        if not isinstance(started_at, Moment):
            raise TypeError(f"started_at must be a Moment, not {type(started_at).__name__}")
        self.thresholds = thresholds
        self.started_at = started_at
        self._lock = threading.Lock()
        self._last_scan_at: Moment | None = None
        self._last_successful_scan_at: Moment | None = None
        self._consecutive_scan_failures = 0
        self._consecutive_attach_failures = 0
        self._total_scans = 0
        self._total_scan_failures = 0
        self._total_attaches = 0
        self._total_attach_failures = 0
        self._errors_by_type: Counter[str] = Counter()
        self._store_failing_since: Moment | None = None
        self._store_failure: str | None = None
        self._problems: dict[str, str] = {}
        self._last_successful_attach_at: Moment | None = None
        self._status: HealthStatus | None = None
        self._status_since: Moment | None = None

    @classmethod
    def restore(
        cls,
        thresholds: HealthThresholds,
        started_at: Moment,
        **last_snapshot,
    ) -> HealthTracker:
        """A tracker for a restarted daemon that continues the totals of its last snapshot,
        and the time of its last successful attach (resume()'s arguments). Consecutive
        counters, scan times and the status start afresh: they describe this run."""
        tracker = cls(thresholds, started_at)
        tracker.resume(**last_snapshot)
        return tracker

    def resume(
        self,
        *,
        total_scans: int = 0,
        total_scan_failures: int = 0,
        total_attaches: int = 0,
        total_attach_failures: int = 0,
        errors_by_type: dict[str, int] | None = None,
        last_successful_attach_at: Moment | None = None,
    ) -> None:
        """Continue the totals of a last snapshot in this tracker (see restore()); what was
        recorded or reported here already (a part's problem, this run's counts) stays."""
        totals = {
            "total_scans": total_scans,
            "total_scan_failures": total_scan_failures,
            "total_attaches": total_attaches,
            "total_attach_failures": total_attach_failures,
            **{f"errors_by_type[{k!r}]": v for k, v in (errors_by_type or {}).items()},
        }
        for name, value in totals.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
        if total_scan_failures > total_scans:
            raise ValueError(
                f"total_scan_failures ({total_scan_failures}) exceeds total_scans ({total_scans})"
            )
        if total_attach_failures > total_attaches:
            raise ValueError(
                f"total_attach_failures ({total_attach_failures}) exceeds "
                f"total_attaches ({total_attaches})"
            )
        with self._lock:
            self._total_scans += total_scans
            self._total_scan_failures += total_scan_failures
            self._total_attaches += total_attaches
            self._total_attach_failures += total_attach_failures
            self._errors_by_type.update({str(k): v for k, v in (errors_by_type or {}).items()})
            if self._last_successful_attach_at is None:
                self._last_successful_attach_at = last_successful_attach_at

    def record_scan(self, ok: bool, now: Moment) -> None:
        with self._lock:
            self._total_scans += 1
            self._last_scan_at = now
            if ok:
                self._consecutive_scan_failures = 0
                self._last_successful_scan_at = now
            else:
                self._consecutive_scan_failures += 1
                self._total_scan_failures += 1

    def record_attach(self, ok: bool, now: Moment) -> None:
        with self._lock:
            self._total_attaches += 1
            if ok:
                self._consecutive_attach_failures = 0
                self._last_successful_attach_at = now
            else:
                self._consecutive_attach_failures += 1
                self._total_attach_failures += 1

    def record_error(self, error_type: str) -> None:
        """Count one error of `error_type` (an ErrorType or any other label)."""
        with self._lock:
            self._errors_by_type[str(error_type)] += 1

    def record_store_write(self, error: str | None, now: Moment) -> None:
        """A write transaction's outcome: None when it committed, else why it failed."""
        with self._lock:
            if error is None:
                self._store_failing_since = self._store_failure = None
                return
            if self._store_failing_since is None:
                self._store_failing_since = now
            self._store_failure = error

    def set_problem(self, part: str, reason: str | None) -> None:
        """`part` of the daemon is degraded for `reason`; None: it works again."""
        with self._lock:
            if reason is None:
                self._problems.pop(part, None)
            else:
                self._problems[part] = reason

    def evaluate(self, now: Moment) -> HealthReport:
        with self._lock:
            last_success = self._last_successful_scan_at
            reference = self.started_at if last_success is None else last_success
            # A clock stepped backwards must not make the daemon look fresher than "just now".
            without_success = max(0.0, now.seconds_since(reference))
            status, reasons = assess(
                self.thresholds,
                self._consecutive_scan_failures,
                self._consecutive_attach_failures,
                without_success,
                ever_scanned_successfully=last_success is not None,
            )
            loop_status = status
            if self._problems:
                if status == HealthStatus.HEALTHY:
                    status, reasons = HealthStatus.DEGRADED, ()
                reasons = (*reasons, *self._problems.values())
            if self._store_failing_since is not None:
                status, reasons = _with_store_failure(
                    status,
                    reasons,
                    self.thresholds,
                    max(0.0, now.seconds_since(self._store_failing_since)),
                    self._store_failure,
                )
            if status != self._status:
                self._status_changed(status, reasons, now)
            return HealthReport(
                status=status,
                reasons=reasons,
                evaluated_at=now,
                started_at=self.started_at,
                last_scan_at=self._last_scan_at,
                last_successful_scan_at=last_success,
                seconds_since_last_successful_scan=None
                if last_success is None
                else without_success,
                consecutive_scan_failures=self._consecutive_scan_failures,
                consecutive_attach_failures=self._consecutive_attach_failures,
                total_scans=self._total_scans,
                total_scan_failures=self._total_scan_failures,
                total_attaches=self._total_attaches,
                total_attach_failures=self._total_attach_failures,
                errors_by_type=dict(self._errors_by_type),
                store_failing_since=self._store_failing_since,
                store_failure=self._store_failure,
                loop_status=loop_status,
                status_since=self._status_since,
                last_successful_attach_at=self._last_successful_attach_at,
            )

    def _status_changed(self, status: HealthStatus, reasons: tuple[str, ...], now: Moment) -> None:
        """One line per change, whichever thread evaluates first (the loop or /healthz); the
        first status of a run dates from its start and is no change."""
        before = self._status
        self._status = status
        if before is None:
            self._status_since = self.started_at
            if status == HealthStatus.HEALTHY:
                return
        else:
            self._status_since = now
        worse = before is None or SEVERITY[status] > SEVERITY[before]
        why = "; ".join(reasons) or "no failure rule applies any more"
        log.log(
            logging.WARNING if worse else logging.INFO,
            "health: %s -> %s (%s)",
            "starting" if before is None else before.value,
            status.value,
            why,
        )


def _with_store_failure(
    status: HealthStatus,
    reasons: tuple[str, ...],
    thresholds: HealthThresholds,
    failing_for: float,
    why: str | None,
) -> tuple[HealthStatus, tuple[str, ...]]:
    """Degraded from the first refused write; unhealthy past `stale_scan_after` of them."""
    reason = f"database cannot be written for {_seconds(failing_for)}: {why or 'unknown cause'}"
    if failing_for > thresholds.stale_scan_after:
        reason += f" (unhealthy after {_seconds(thresholds.stale_scan_after)})"
        return HealthStatus.UNHEALTHY, (reason, *reasons)
    if status == HealthStatus.HEALTHY:
        return HealthStatus.DEGRADED, (reason,)
    return status, (*reasons, reason)


class SnapshotSchedule:
    """When to store a health snapshot: on every change of status or of a consecutive failure
    counter (so what `ffrtmp health` reads of them is current: they change at most once per
    scan or attach, each of which writes rows anyway), and at least every `interval` seconds
    otherwise."""

    def __init__(self, interval: float = defaults.HEALTH_SNAPSHOT_INTERVAL_SECONDS) -> None:
        try:
            self.interval = SNAPSHOT_INTERVAL.accept(interval)
        except Invalid as exc:
            raise InvalidSetting("snapshot_interval", exc.predicate) from None
        self._last_status: HealthStatus | None = None
        self._last_at: Moment | None = None
        self._last_counters: tuple[int, int] | None = None

    def due(self, report: HealthReport, now: Moment) -> bool:
        if self._last_at is None or report.status != self._last_status:
            return True
        if _consecutive(report) != self._last_counters:
            return True
        # A clock stepped backwards would otherwise silence snapshots until it caught up.
        return now.seconds_since(self._last_at) >= self.interval or now < self._last_at

    def mark(self, report: HealthReport, now: Moment) -> None:
        self._last_status = report.status
        self._last_at = now
        self._last_counters = _consecutive(report)


def _consecutive(report: HealthReport) -> tuple[int, int]:
    return report.consecutive_scan_failures, report.consecutive_attach_failures


def _seconds(value: float) -> str:
    rounded = round(value, 1)
    return f"{rounded:.0f}s" if rounded == int(rounded) else f"{rounded:.1f}s"
