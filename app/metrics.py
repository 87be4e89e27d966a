"""Prometheus metrics of the daemon, in a registry of its own (never the process-global one).

Two kinds of values:

- events the loop reports as they happen (`observe_scan`, `discovered`, `overflow`), kept in
  prometheus_client counters and a histogram;
- state read when Prometheus scrapes (health, attached processes, retry-queue depths, errors by
  type), through the daemon's read-only view (ffrtmp.daemon.view), so a stuck loop cannot leave
  a stale "healthy" behind. Errors are read from the health
  tracker, which already counts every classified error once, wherever it was classified.

No label ever carries a pid or a job id: every label has a small, fixed set of values.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ffrtmp import defaults
from ffrtmp.health import SEVERITY, HealthReport
from ffrtmp.states import ErrorType, RetryState

if TYPE_CHECKING:
    from ffrtmp.daemon.view import DaemonView

log = logging.getLogger(__name__)

# Scans of /proc take about a millisecond on an idle node and rarely a second on a busy one.
SCAN_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
SCAN_RESULTS = ("ok", "failed")


class CachedValue:
    """The result of `read()`, reused for `max_age` seconds so scrapes don't hammer SQLite.
    A failed read keeps the last good value (if any) and is retried on the next call."""

    def __init__(
        self,
        read: Callable[[], dict[str, int]],
        max_age: float = defaults.METRICS_STORE_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._value: dict[str, int] | None = None
        self._read_at: float | None = None

    def get(self) -> dict[str, int] | None:
        with self._lock:
            now = self._clock()
            if self._read_at is not None and now - self._read_at < self._max_age:
                return self._value
            try:
                self._value = dict(self._read())
                self._read_at = now
            except Exception as exc:  # a locked or failing database must not fail the scrape
                log.warning("cannot read the retry queue for metrics: %s", exc)
            return self._value


class Metrics:
    """`view` (a ffrtmp.daemon.view.DaemonView) is read at scrape time; None leaves out what
    it would give."""

    def __init__(
        self,
        view: DaemonView | None = None,
        *,
        cache_seconds: float = defaults.METRICS_STORE_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.view = view
        self.registry = CollectorRegistry()
        self._scans = Counter(
            "ffrtmp_scans_total",
            "Full scans of /proc, by result.",
            ["result"],
            registry=self.registry,
        )
        for result in SCAN_RESULTS:
            self._scans.labels(result)
        self._scan_duration = Histogram(
            "ffrtmp_scan_duration_seconds",
            "Duration of full scans of /proc, failed ones included.",
            buckets=SCAN_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._discovered = Counter(
            "ffrtmp_processes_discovered_total",
            "Matching processes seen for the first time.",
            registry=self.registry,
        )
        self._overflows = Counter(
            "ffrtmp_event_overflows_total",
            "Times the kernel's process-events socket lost events (a full scan follows).",
            registry=self.registry,
        )
        self.retry_items = CachedValue(self._read_retry_depths, cache_seconds, clock)
        self.registry.register(_DaemonStateCollector(self))

    # --- hooks the loop calls ------------------------------------------------------------

    def observe_scan(self, duration_s: float, ok: bool) -> None:
        self._scans.labels("ok" if ok else "failed").inc()
        self._scan_duration.observe(duration_s)

    def discovered(self, n: int = 1) -> None:
        self._discovered.inc(n)

    def overflow(self) -> None:
        self._overflows.inc()

    # --- scrape --------------------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def _read_retry_depths(self) -> dict[str, int]:
        if self.view is None or self.view.retry_depths is None:
            raise LookupError("no retry queue to read")
        return self.view.retry_depths()


class _DaemonStateCollector:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        # Names only, so registering reads nothing.
        return [family for family, _ in self._families()]

    def collect(self) -> Iterator[Metric]:
        view = self.metrics.view
        if view is None:
            return
        state = _ScrapeState(view)
        for family, fill in self._families():
            try:
                fill(family, state)
            except Exception as exc:  # one unreadable source leaves the others in the scrape
                log.warning("cannot collect %s: %s", family.name, exc)
                continue
            yield family

    def _families(self) -> list[tuple[Metric, Callable[[Metric, _ScrapeState], None]]]:
        return [
            (
                GaugeMetricFamily(
                    "ffrtmp_health_status",
                    "Health of the daemon now: 0 healthy, 1 degraded, 2 unhealthy.",
                ),
                lambda family, state: family.add_metric([], SEVERITY[state.report.status]),
            ),
            (
                GaugeMetricFamily(
                    "ffrtmp_last_successful_scan_timestamp_seconds",
                    "Epoch time of the last successful full scan; 0 before the first one.",
                ),
                lambda family, state: family.add_metric(
                    [],
                    0.0
                    if state.report.last_successful_scan_at is None
                    else state.report.last_successful_scan_at.wall,
                ),
            ),
            (
                GaugeMetricFamily(
                    "ffrtmp_processes_attached",
                    "Processes followed now that sit in cgroups of ours.",
                ),
                lambda family, state: family.add_metric([], state.view.followed_now()[0]),
            ),
            (
                GaugeMetricFamily(
                    "ffrtmp_processes_ungoverned",
                    "Processes followed now that run without cgroups of ours (no limit applies: "
                    "observed, retrying, or dead letters).",
                ),
                lambda family, state: family.add_metric([], state.view.followed_now()[1]),
            ),
            (
                CounterMetricFamily(
                    "ffrtmp_attaches",
                    "Attaches of processes to their cgroups, by result (totals kept across "
                    "restarts).",
                    labels=["result"],
                ),
                self._attaches,
            ),
            *self._usage_families(),
            (
                GaugeMetricFamily(
                    "ffrtmp_store_writes_kept",
                    "Writes the database refused, kept in memory until it takes them.",
                ),
                lambda family, state: family.add_metric([], state.view.pending_writes()),
            ),
            (
                CounterMetricFamily(
                    "ffrtmp_internal_errors",
                    "Programming errors the loop caught and went on after (each logged with its "
                    "traceback); anything but 0 is a bug to report.",
                ),
                lambda family, state: family.add_metric([], state.view.internal_errors()),
            ),
            (
                GaugeMetricFamily(
                    "ffrtmp_retry_items",
                    "Retry-queue items by state (read from the database, cached briefly).",
                    labels=["state"],
                ),
                self._retry_items,
            ),
            (
                CounterMetricFamily(
                    "ffrtmp_errors",
                    "Classified errors since the daemon started, by type.",
                    labels=["type"],
                ),
                self._errors,
            ),
        ]

    @staticmethod
    def _attaches(family: CounterMetricFamily, state: _ScrapeState) -> None:
        report = state.report
        family.add_metric(["ok"], report.total_attaches - report.total_attach_failures)
        family.add_metric(["failed"], report.total_attach_failures)

    def _usage_families(self) -> list[tuple[Metric, Callable[[Metric, _ScrapeState], None]]]:
        """Usage while running (ffrtmp.usage), summed per rule as of the last sample."""
        by_rule = "by rule (`other`: no configured rule), as of the last usage sample"

        def per_rule(attribute: str) -> Callable[[Metric, _ScrapeState], None]:
            def fill(family: Metric, state: _ScrapeState) -> None:
                for rule, totals in state.view.usage_totals().items():
                    family.add_metric([rule], getattr(totals, attribute))

            return fill

        return [
            (
                GaugeMetricFamily(
                    "ffrtmp_governed_jobs", f"Governed jobs running, {by_rule}.", labels=["rule"]
                ),
                per_rule("jobs"),
            ),
            (
                GaugeMetricFamily(
                    "ffrtmp_governed_memory_bytes",
                    f"Memory charged to the running governed jobs' cgroups, {by_rule}.",
                    labels=["rule"],
                ),
                per_rule("memory_bytes"),
            ),
            (
                CounterMetricFamily(
                    "ffrtmp_governed_cpu_seconds",
                    f"CPU time used by governed jobs in their cgroups, {by_rule}.",
                    labels=["rule"],
                ),
                per_rule("cpu_seconds"),
            ),
            (
                CounterMetricFamily(
                    "ffrtmp_governed_cpu_throttled_seconds",
                    f"Time governed jobs were held back by their CPU quota, {by_rule}.",
                    labels=["rule"],
                ),
                per_rule("cpu_throttled_seconds"),
            ),
        ]

    def _retry_items(self, family: GaugeMetricFamily, state: _ScrapeState) -> None:
        depths = self.metrics.retry_items.get()
        if depths is None:
            raise RuntimeError("the retry queue has not been readable yet")
        for retry_state in RetryState:
            family.add_metric([retry_state.value], depths.get(retry_state.value, 0))

    @staticmethod
    def _errors(family: CounterMetricFamily, state: _ScrapeState) -> None:
        counted = state.report.errors_by_type
        by_type = {t.value: counted.get(t.value, 0) for t in ErrorType}
        # Any other label the tracker was given counts as unknown, keeping the label set fixed.
        by_type[ErrorType.UNKNOWN.value] += sum(n for t, n in counted.items() if t not in by_type)
        for error_type, count in by_type.items():
            family.add_metric([error_type], count)


class _ScrapeState:
    """The daemon as one scrape sees it: health is evaluated once, on first use."""

    def __init__(self, view: DaemonView) -> None:
        self.view = view
        self._report: HealthReport | None = None

    @property
    def report(self) -> HealthReport:
        if self._report is None:
            self._report = self.view.report()
        return self._report
