"""Recovery at start-up: take up what an earlier run left.

The living processes of unfinished rows are adopted (followed again; attached again if they left
their cgroup, or were never attached: a crash in between), the dead are closed (ended while no
daemon ran, or before a reboot), empty job cgroups are removed, and a job cgroup holding a
process no row speaks of (an attach cut short between the move and its row) is noted for the
scan that finds the process. Retry items whose last attempt a stop cut short and that have no
attempt left become dead letters. The health totals of the last snapshot go on.
"""

from __future__ import annotations

import logging

from ffrtmp.clock import Moment
from ffrtmp.daemon.admission import Admission
from ffrtmp.health import HealthTracker
from ffrtmp.identity import ProcessIdentity, boot_id
from ffrtmp.lifecycle import REASON_DAEMON_DOWN, REASON_REBOOTED, Followed, Lifecycle
from ffrtmp.outbox import Outbox
from ffrtmp.states import ProcessState
from ffrtmp.store import Store
from ffrtmp.utctime import utc

log = logging.getLogger("ffrtmp.daemon")


class Recovery:
    def __init__(
        self,
        *,
        store: Store,
        governor,
        unavailable: str | None,
        outbox: Outbox,
        lifecycle: Lifecycle,
        admission: Admission,
    ) -> None:
        self.store = store
        self.governor = governor
        self.unavailable = unavailable
        self.outbox = outbox
        self.lifecycle = lifecycle
        self.admission = admission

    def recover(self, now: Moment) -> dict[str, int]:
        """Adopt the living, close the dead, clean up. Returns how many processes it adopted,
        attached again, followed and closed."""
        counts = dict.fromkeys(("adopted", "attached", "followed", "closed"), 0)
        current_boot = boot_id()
        leftovers: dict[str, list[int]] = {}
        if not self.unavailable:
            try:
                leftovers = self.governor.leftovers()
            except OSError as exc:
                log.warning("cannot list leftover cgroups: %s", exc)
        recorded_jobs = set()
        for tracked in self.store.unfinished_processes():
            recorded_jobs.add(tracked.job_id)
            ident = tracked.identity
            if ident.boot_id != current_boot:
                self._close(tracked.process_id, ident, tracked.job_id, now, REASON_REBOOTED)
                counts["closed"] += 1
                continue
            if not ident.is_running():
                counts["closed"] += 1
                self._close(
                    tracked.process_id,
                    ident,
                    tracked.job_id,
                    now,
                    REASON_DAEMON_DOWN,
                    governed=tracked.job_id in leftovers,
                )
                continue
            in_cgroup = ident.pid in leftovers.get(tracked.job_id, ())
            if tracked.state in (ProcessState.ATTACHED, ProcessState.DETACHED) and in_cgroup:
                self._mark_adopted(tracked.process_id, now, ProcessState.ATTACHED)
                self.lifecycle.follow(Followed(tracked.process_id, ident, tracked.job_id, True))
                counts["adopted"] += 1
            elif tracked.state in (ProcessState.RETRYING, ProcessState.OBSERVED, ProcessState.DEAD):
                self.lifecycle.follow(Followed(tracked.process_id, ident, tracked.job_id, False))
                counts["followed"] += 1
            else:
                counts["attached"] += 1
                # Discovered but never attached (a crash in between), or moved out of its
                # cgroup while we were away: attach again, on the same row.
                self._mark_adopted(tracked.process_id, now, ProcessState.DISCOVERED)
                self.admission.attach(
                    tracked.process_id, ident, tracked.job_id, tracked.limits, now, look_first=True
                )
        followed_jobs = {f.job_id for f in self.lifecycle.followed if f.governed}
        for job_id, pids in leftovers.items():
            if not pids and job_id not in followed_jobs:
                self.lifecycle.release(job_id, now)
            elif pids and job_id not in recorded_jobs:
                self.admission.moved_without_row.add(job_id)
        return counts

    def dead_letter_exhausted(self, now: Moment) -> None:
        """After recovery, which has cancelled the items of processes that exited meanwhile."""
        exhausted: list[int] = []
        self.outbox.write(
            "dead-lettering exhausted retries",
            lambda: exhausted.append(self.store.dead_letter_exhausted(now=utc(now.wall))),
            now,
        )
        if exhausted and exhausted[0]:
            log.error(
                "dead letter: %d retry items whose last attempt was cut short by the last stop; "
                "see `ffrtmp retries list`",
                exhausted[0],
            )

    def _mark_adopted(self, process_id: int, now: Moment, state: ProcessState) -> None:
        self.outbox.write(
            f"the adoption of process {process_id}",
            lambda: self.store.mark_adopted(process_id, now=utc(now.wall), state=state),
            now,
        )

    def _close(
        self,
        process_id: int,
        ident: ProcessIdentity,
        job_id: str,
        now: Moment,
        reason: str,
        governed: bool = False,
    ) -> None:
        followed = Followed(process_id, ident, job_id, governed)
        info = self.lifecycle.exit_info_for(ident, reason)
        # Ended while no daemon ran: when exactly, nobody saw.
        self.lifecycle.finish(followed, info, now, end_seen=False)


def resume_health_totals(store: Store, health: HealthTracker, now: Moment) -> None:
    """The totals go on across restarts; the consecutive counters describe this run. They are
    taken into the tracker in place: what parts reported before start() (an HTTP address that
    could not be bound) stays reported."""
    last = store.last_health()
    if last is None:
        return
    details = last.details or {}
    try:
        health.resume(
            total_scans=int(details.get("total_scans", 0)),
            total_scan_failures=last.total_scan_failures,
            total_attaches=int(details.get("total_attaches", 0)),
            total_attach_failures=last.total_attach_failures,
            errors_by_type={str(k): int(v) for k, v in (last.errors_by_type or {}).items()},
            last_successful_attach_at=(
                now.at_wall(last.last_successful_attach_at.timestamp())
                if last.last_successful_attach_at
                else None
            ),
        )
    except (TypeError, ValueError) as exc:
        log.warning("health totals of the last run not restored: %s", exc)
