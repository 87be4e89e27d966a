"""Usage while running: every `usage_interval` the daemon reads each governed job's cgroup
counters (CPU time, memory now and at peak, CPU throttling) and the process's own high-water
resident size (VmHWM, ffrtmp.process_memory), and keeps the latest values on its process row,
and sums per rule for /metrics. Not a time series: one row per process, updated in place;
Prometheus keeps the history of the sums.

It runs in a thread of its own so that neither the reads nor the database write can delay
governing: the loop only starts and stops it. It reads the followed processes the way the
metrics do (the immutable tuple the loop publishes on each change), and the write touches only
rows whose exit is not recorded yet, so a sample read just before an exit never overwrites the
final figures.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ffrtmp.cgroups.live import LiveUsage, LiveUsageFiles
from ffrtmp.clock import Clock, Moment, SystemClock
from ffrtmp.process_memory import peak_resident_bytes
from ffrtmp.utctime import utc

log = logging.getLogger(__name__)

OTHER_RULE = "other"  # the rule label of processes no configured rule names (manual, run)


@dataclass
class RuleTotals:
    """What /metrics shows of one rule: the running jobs of the last sample, their memory,
    and the CPU and throttled time all sampled jobs of the rule have used (counters)."""

    jobs: int = 0
    memory_bytes: int = 0
    cpu_seconds: float = 0.0
    cpu_throttled_seconds: float = 0.0


class UsageSampler:
    """`followed` returns the followed processes as the loop last published them (an immutable
    tuple of objects with process_id, job_id, governed);
    `rule_names` the rules of the running configuration; `on_error(exc, now)` records a
    failed sample (the database refused the write, say) and must not raise."""

    def __init__(
        self,
        store,
        governor,
        followed: Callable[[], Iterable[object]],
        rule_names: Callable[[], Iterable[str]],
        interval: float,
        on_error: Callable[[BaseException, Moment], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.governor = governor
        self.followed = followed
        self.rule_names = rule_names
        self.interval = interval
        self.on_error = on_error
        self.clock = clock or SystemClock()
        self._files: dict[str, LiveUsageFiles] = {}  # job id -> where its counters are
        self._rules: dict[int, str | None] = {}  # process row id -> its rule
        self._last: dict[int, LiveUsage] = {}  # process row id -> its previous sample
        self._totals: dict[str, RuleTotals] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # --- the thread ----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None or self.governor is None:
            return
        self._thread = threading.Thread(target=self._run, name="ffrtmp-usage", daemon=True)
        self._thread.start()

    def set_interval(self, interval: float) -> None:
        """A reload's new interval (0: off), in force from now on."""
        self.interval = interval
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping:
            interval = self.interval
            if self._wake.wait(interval if interval > 0 else None):
                self._wake.clear()  # a new interval, or stop: wait again (or leave)
                continue
            self.sample_safely(self.clock.now())

    def sample_safely(self, now: Moment) -> None:
        try:
            self.sample(now)
        except Exception as exc:  # a failed sample is recorded; the next one tries again
            if self.on_error is not None:
                self.on_error(exc, now)
            else:
                log.warning("usage sample failed: %s", exc)

    # --- one sample ----------------------------------------------------------------------

    def sample(self, now: Moment) -> int:
        """Read every governed job's counters and store them; returns the rows written."""
        # A process governed while the database refused writes has no row yet: nothing to
        # write its usage to until the outbox has written the row.
        governed = [f for f in self.followed() if f.governed and f.process_id is not None]
        readings: list[tuple[int, LiveUsage]] = []
        process_peaks: dict[int, int] = {}
        jobs_now = set()
        for followed in governed:
            usage = self._read(followed.job_id)
            if usage is not None:
                readings.append((followed.process_id, usage))
                jobs_now.add(followed.job_id)
                peak = peak_resident_bytes(followed.identity)
                if peak is not None:
                    process_peaks[followed.process_id] = peak
        for job_id in [j for j in self._files if j not in jobs_now]:
            del self._files[job_id]
        written = 0
        if readings:
            written = self.store.record_usage(
                readings, now=utc(now.wall), process_peaks=process_peaks
            )
        self._add_to_totals(readings)
        return written

    def _read(self, job_id: str) -> LiveUsage | None:
        files = self._files.get(job_id)
        if files is None:
            files = LiveUsageFiles.find(
                self.governor.version, self.governor.job_directories(job_id)
            )
            if not files.exists:
                return None  # released meanwhile: its process has ended
            self._files[job_id] = files
        try:
            return files.read()
        except FileNotFoundError:
            del self._files[job_id]
            return None

    def _add_to_totals(self, readings: list[tuple[int, LiveUsage]]) -> None:
        unknown = [pid for pid, _ in readings if pid not in self._rules]
        if unknown:
            self._rules.update(self.store.rules_of(unknown))
        configured = set(self.rule_names())
        sampled: dict[str, RuleTotals] = {}
        for process_id, usage in readings:
            rule = self._rules.get(process_id)
            label = rule if rule in configured else OTHER_RULE
            now_totals = sampled.setdefault(label, RuleTotals())
            now_totals.jobs += 1
            now_totals.memory_bytes += usage.memory_current_bytes or 0
            before = self._last.get(process_id)
            now_totals.cpu_seconds += _growth(usage.cpu_seconds, before and before.cpu_seconds)
            now_totals.cpu_throttled_seconds += _growth(
                usage.cpu_throttled_seconds, before and before.cpu_throttled_seconds
            )
        self._last = dict(readings)
        self._rules = {pid: self._rules[pid] for pid in self._last if pid in self._rules}
        with self._lock:
            for label in configured | {OTHER_RULE} | set(self._totals):
                totals = self._totals.setdefault(label, RuleTotals())
                now_totals = sampled.get(label, RuleTotals())
                totals.jobs, totals.memory_bytes = now_totals.jobs, now_totals.memory_bytes
                totals.cpu_seconds += now_totals.cpu_seconds
                totals.cpu_throttled_seconds += now_totals.cpu_throttled_seconds

    def totals(self) -> dict[str, RuleTotals]:
        """Per rule label: every configured rule and `other`, at 0 before any sample."""
        labels = set(self.rule_names()) | {OTHER_RULE}
        with self._lock:
            return {
                label: RuleTotals(**vars(self._totals[label]))
                if label in self._totals
                else RuleTotals()
                for label in sorted(labels)
            }


def _growth(value: float | None, before: float | None) -> float:
    """How much a counter grew since the last sample (all of it for a new job)."""
    if value is None:
        return 0.0
    return max(0.0, value - (before or 0.0))
