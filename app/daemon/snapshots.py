"""Health snapshots: the daemon's health as rows of `health_snapshots`, for `ffrtmp health`
and the fleet to read. One is stored on every change of status or of a consecutive failure
counter, and at least every `snapshot_interval` otherwise (ffrtmp.health.SnapshotSchedule);
systemd's status line follows each one."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from ffrtmp.clock import Moment
from ffrtmp.daemon.errors import STORE_ERRORS, LoopErrors
from ffrtmp.health import HealthReport, HealthTracker, SnapshotSchedule
from ffrtmp.outbox import Outbox
from ffrtmp.store import Store
from ffrtmp.utctime import utc


def stamp(moment: Moment | None):
    """A moment as a row's time: its wall reading, in UTC."""
    return None if moment is None else utc(moment.wall)


class HealthSnapshots:
    def __init__(
        self,
        *,
        health: HealthTracker,
        schedule: SnapshotSchedule,
        store: Store,
        outbox: Outbox,
        errors: LoopErrors,
        run_id: Callable[[], int | None],
        details: Callable[[], dict],
        on_snapshot: Callable[[HealthReport], None] | None = None,
    ) -> None:
        self.health = health
        self.schedule = schedule
        self.store = store
        self.outbox = outbox
        self.errors = errors
        self._run_id = run_id
        self._details = details  # what the daemon adds: discovery, followed, cgroups, ...
        self._on_snapshot = on_snapshot

    @property
    def interval(self) -> float:
        """The longest time between two snapshots, in seconds."""
        return self.schedule.interval

    def tick(self, now: Moment) -> None:
        report = self.health.evaluate(now)
        if not self.schedule.due(report, now):
            return
        counters = {
            "last_scan_at": stamp(report.last_scan_at),
            "last_successful_scan_at": stamp(report.last_successful_scan_at),
            "consecutive_scan_failures": report.consecutive_scan_failures,
            "consecutive_attach_failures": report.consecutive_attach_failures,
            "total_scan_failures": report.total_scan_failures,
            "total_attach_failures": report.total_attach_failures,
            "status_since": stamp(report.status_since),
            "last_successful_attach_at": stamp(report.last_successful_attach_at),
        }
        details = {
            **self._details(),
            "total_scans": report.total_scans,
            "total_attaches": report.total_attaches,
            "pid": os.getpid(),
            # What a reader of the database needs to judge this snapshot as we do.
            "thresholds": dataclasses.asdict(self.health.thresholds),
            "snapshot_interval_s": self.schedule.interval,
        }
        taken_at = utc(now.wall)
        try:
            # Queued when refused (run_id read then: the run's row may be queued too).
            self.outbox.write(
                "a health snapshot",
                lambda: self.store.record_health(
                    now=taken_at,
                    run_id=self._run_id(),
                    status=str(report.status),
                    reasons=list(report.reasons),
                    counters=counters,
                    errors_by_type=report.errors_by_type,
                    details=details,
                ),
                now,
            )
            self.schedule.mark(report, now)
        except STORE_ERRORS as exc:
            self.errors.record("store", exc, now)
        if self._on_snapshot is not None:
            self._on_snapshot(report)
