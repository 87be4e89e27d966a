"""Admission: deciding about each matching process the scan or an exec event finds, and
putting it under governance through the one attach path (ffrtmp.attach).

A process is attached, skipped (a filter says so), deferred (younger than min_runtime: looked at
again when it comes of age), or left to whoever recorded it already (recovery, the retry queue,
`ffrtmp attach`). Identities decided for good are kept in `settled` until their pid leaves the
process table, so none is looked at twice. While the database refuses writes, a new process is
governed first and recorded when the database takes writes again (`_govern_unrecorded`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ffrtmp.attach import VANISHED_REASON, Attacher
from ffrtmp.candidate import Candidate
from ffrtmp.cgroups import job_id_for
from ffrtmp.clock import Moment, seconds_since_boot
from ffrtmp.daemon.errors import STORE_ERRORS, LoopErrors
from ffrtmp.errors import classify
from ffrtmp.identity import ProcessIdentity
from ffrtmp.lifecycle import Followed, Lifecycle
from ffrtmp.outbox import Outbox, is_store_failure
from ffrtmp.states import ProcessState
from ffrtmp.store import Store
from ffrtmp.utctime import utc

log = logging.getLogger("ffrtmp.daemon")

JOB_PREFIX = "auto"


class Admission:
    def __init__(
        self,
        config,
        scanner,
        *,
        store: Store,
        governor,
        unavailable: str | None,
        outbox: Outbox,
        attacher: Attacher,
        lifecycle: Lifecycle,
        errors: LoopErrors,
        discovered: Callable[[], None],
        retry_queued: Callable[[Moment], None],
    ) -> None:
        self.config = config
        self.scanner = scanner
        self.store = store
        self.governor = governor
        self.unavailable = unavailable
        self.outbox = outbox
        self.attacher = attacher
        self.lifecycle = lifecycle
        self.errors = errors
        self._discovered = discovered  # a new matching process, for /metrics
        self._retry_queued = retry_queued  # an attach queued a retry due then
        # Identities decided for good (skipped, vanished, owned elsewhere) -> process id;
        # forgotten once their pid leaves the process table, so it never outgrows the table.
        self.settled: dict[ProcessIdentity, int] = {}
        self.deferred: dict[ProcessIdentity, Moment] = {}  # min_runtime not reached: until when
        # The settled ones a filter skipped: looked at again after a reload.
        self.skipped: set[ProcessIdentity] = set()
        # Job cgroups recovery found holding a process no row speaks of: an attach cut short
        # between the move and its row. The scan that finds the process records what the
        # kernel shows, without another try (ffrtmp.attach: register after the move).
        self.moved_without_row: set[str] = set()

    def use(self, config, scanner) -> None:
        """A reload's configuration: the skipped are looked at again under its filters."""
        self.config, self.scanner = config, scanner
        for ident in self.skipped:
            self.settled.pop(ident, None)

    def next_deferred(self) -> Moment | None:
        return min(self.deferred.values()) if self.deferred else None

    def consider(self, candidate: Candidate, now: Moment) -> int:
        """Decide about one matching process; returns 1 if it was new to us."""
        ident = candidate.identity
        if ident in self.settled or self.lifecycle.is_followed(ident):
            return 0
        until = self.deferred.get(ident)
        if until is not None and now < until:
            return 0
        since_boot = seconds_since_boot()
        verdict = self.config.evaluate(candidate, since_boot)
        if verdict.decision == "defer":
            wait = self.config.scan_interval
            if verdict.retry_at is not None:
                wait = max(0.0, verdict.retry_at - since_boot)
            self.deferred[ident] = now + wait
            return 0
        self.deferred.pop(ident, None)
        job_id = self.job_id(candidate)
        wall = utc(now.wall)
        if verdict.decision == "skip":
            recorded: list[tuple[int, bool]] = []
            self.outbox.write(
                f"the skip of {ident}",
                lambda: recorded.append(
                    self.store.register(
                        candidate,
                        job_id=job_id,
                        limits=None,
                        now=wall,
                        state=ProcessState.SKIPPED,
                        reason=verdict.reason,
                    )
                ),
                now,
            )
            # 0 until the row is written: only being settled counts here.
            self.settled[ident] = recorded[0][0] if recorded else 0
            self.skipped.add(ident)
            return int(recorded[0][1]) if recorded else 1
        limits = self.limits_for(candidate.rule)
        if len(self.outbox):
            # The database refuses writes (or has others to take first): govern at once.
            self._govern_unrecorded(candidate, job_id, limits, now)
            return 1
        process_id = self.store.process_id_of(ident)
        if process_id is not None:
            if ident in self.skipped and self.store.reconsider_skipped(
                process_id, limits, now=wall
            ):
                # Skipped under the configuration before a reload; the new one governs it.
                self.skipped.discard(ident)
                self.attach(process_id, ident, job_id, limits, now)
                return 0
            if self.store.attach_was_cut_short(process_id, f"{JOB_PREFIX}-"):
                # Our own attach of it failed before its outcome was stored (the store
                # refused a commit): finish it; the governor reuses the job cgroup.
                self.attach(process_id, ident, job_id, limits, now, look_first=True)
                return 0
            # Recorded by an earlier run or by `ffrtmp attach`; recovery or the retry queue
            # owns it, never a second attach here.
            self.settled[ident] = process_id
            return 0
        self._discovered()

        def register() -> int:
            # After the cgroup work: no write waits between a new process and its limits.
            # Not synced on its own: the attach's outcome, committed synced, syncs it too.
            made, _ = self.store.register(
                candidate, job_id=job_id, limits=limits, now=wall, synced=False
            )
            return made

        look_first = job_id in self.moved_without_row
        self.moved_without_row.discard(job_id)
        try:
            self.attach(None, ident, job_id, limits, now, look_first=look_first, register=register)
        except STORE_ERRORS as exc:
            if not is_store_failure(exc):
                raise
            # Its row was refused after the cgroup work: it is governed (the governor finds
            # its job cgroup again); the row waits in the outbox with the rest.
            self._govern_unrecorded(candidate, job_id, limits, now)
        return 1

    def consider_safely(self, candidate: Candidate, now: Moment) -> None:
        with self.errors.guard("events", now, pid=candidate.pid):  # one process, not the loop
            self.consider(candidate, now)

    def inspect(self, pid: int, now: Moment) -> Candidate | None:
        """The process as a candidate if a rule matches it; None if not, or if it is gone."""
        try:
            return self.scanner.inspect(pid)
        except (OSError, ValueError) as exc:
            self.errors.record("events", exc, now, pid=pid)
            return None

    def reconsider_deferred(self, now: Moment) -> None:
        """Processes younger than min_runtime are looked at again when they come of age,
        not a scan interval later."""
        for ident in [i for i, until in self.deferred.items() if until <= now]:
            del self.deferred[ident]
            candidate = self.inspect(ident.pid, now) if ident.is_running() else None
            if candidate is not None:
                self.consider_safely(candidate, now)

    def forget_absent(self, present: set[ProcessIdentity]) -> None:
        for ident in [i for i in self.settled if i not in present]:
            del self.settled[ident]
            self.skipped.discard(ident)
        for ident in [i for i in self.deferred if i not in present]:
            del self.deferred[ident]

    def job_id(self, candidate: Candidate) -> str:
        return job_id_for(JOB_PREFIX, candidate.command, candidate.identity)

    def limits_for(self, rule: str | None):
        return self.config.limits_for(rule) if rule else self.config.default_limits

    def attach(
        self,
        process_id: int | None,
        ident: ProcessIdentity,
        job_id: str,
        limits,
        now: Moment,
        look_first: bool = False,
        register=None,
    ) -> None:
        result = self.attacher.attach(
            process_id, ident, job_id, limits, now=now, look_first=look_first, register=register
        )
        process_id = result.process_id if result.process_id is not None else process_id
        if result.state in (
            ProcessState.ATTACHED,
            ProcessState.OBSERVED,
            ProcessState.RETRYING,
            ProcessState.DEAD,
        ):
            governed = result.state == ProcessState.ATTACHED
            self.lifecycle.follow(Followed(process_id, ident, job_id, governed))
        elif result.state == ProcessState.VANISHED:
            self.lifecycle.finish(
                Followed(process_id, ident, job_id, False),
                self.lifecycle.exit_info_for(ident, VANISHED_REASON),
                now,
                ProcessState.VANISHED,
            )
            self.settled[ident] = process_id
        if result.retry is not None and result.retry.next_attempt_at is not None:
            self._retry_queued(now.at_wall(result.retry.next_attempt_at.timestamp()))

    def _govern_unrecorded(self, candidate: Candidate, job_id: str, limits, now: Moment) -> None:
        """The database refused the process's row: govern it first, record it when the
        database takes writes again (its attach is looked up in the kernel then, so a process
        already in its cgroup is recorded as attached, and its exit follows in order)."""
        ident = candidate.identity
        wall = utc(now.wall)
        attachment = None
        if not self.unavailable:
            try:
                attachment = self.governor.attach(ident, job_id, limits)
                log.info("attached %s as %s (not recorded yet): %s", ident, job_id, limits)
            except OSError as exc:  # recorded with its row, by the attach made then
                log.warning("attach of %s (%s) failed: %s", ident, job_id, classify(exc).message)
        followed = Followed(None, ident, job_id, attachment is not None)
        self.lifecycle.follow(followed)
        self._discovered()

        def record() -> None:
            process_id, is_new = self.store.register(
                candidate, job_id=job_id, limits=limits, now=wall
            )
            followed.process_id = process_id
            if not is_new and not self.store.attach_was_cut_short(process_id, f"{JOB_PREFIX}-"):
                return  # recorded by whoever wrote the row (a try of this one cut short, or not)
            if self.lifecycle.by_pid.get(ident.pid) is followed:
                result = self.attacher.attach(
                    process_id, ident, job_id, limits, now=now, look_first=True
                )
                followed.governed = result.state == ProcessState.ATTACHED
                if result.state not in (ProcessState.ATTACHED, ProcessState.VANISHED):
                    return
            elif attachment is not None:
                # Ended before the database came back: the attach it had, then its exit.
                self.store.record_attached(
                    process_id,
                    cgroup_version=attachment.version,
                    cgroup_paths=attachment.cgroup_paths,
                    applied=attachment.applied,
                    now=wall,
                )

        self.outbox.defer(f"the discovery of {ident}", record)
