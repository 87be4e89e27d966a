"""The one path that puts a process under governance.

The scan, the kernel event listener, the retry worker, `ffrtmp attach` and `ffrtmp run` all
call `Attacher.attach` with a process identity; only the trigger differs.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from ffrtmp.attach_safety import AttachRefused, check_never
from ffrtmp.clock import Clock, Moment, SystemClock
from ffrtmp.errors import CANCEL_REASON_PID_REUSED, Classification, classify
from ffrtmp.identity import ProcessIdentity, current_identity
from ffrtmp.limits import Limits
from ffrtmp.process_memory import peak_resident_bytes
from ffrtmp.states import ProcessState
from ffrtmp.store import RetryOutcome, Store
from ffrtmp.utctime import utc

log = logging.getLogger(__name__)

VANISHED_REASON = "exited before it could be attached"


@dataclass(frozen=True)
class AttachResult:
    state: ProcessState  # attached, observed, retrying, dead, or vanished
    cgroup_paths: tuple[str, ...] = ()
    error: str | None = None
    retry: RetryOutcome | None = None
    process_id: int | None = None  # the process's row, made by `register` when there was none


class Attacher:
    def __init__(
        self,
        store: Store,
        governor,
        policy,
        *,
        retry_enabled: bool,
        health=None,
        unavailable_reason: str | None = None,
        rng: random.Random | None = None,
        outbox=None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.governor = governor
        self.policy = policy
        self.retry_enabled = retry_enabled
        self.health = health
        self.unavailable_reason = unavailable_reason
        self.rng = rng or random.Random()
        # The caller's clock: how long the cgroup work took is read on the base of `now`.
        self.clock = clock or SystemClock()
        # An ffrtmp.outbox.Outbox: the record of a done attach waits there when the database
        # refuses it; the process stays governed. None: written at once, a failure raises.
        self.outbox = outbox

    def _write(self, description: str, write, now: Moment) -> None:
        if self.outbox is None:
            write()
        else:
            self.outbox.write(description, write, now)

    def attach(
        self,
        process_id: int | None,
        identity: ProcessIdentity,
        job_id: str,
        limits: Limits,
        *,
        now: Moment,
        attempt: int = 0,
        look_first: bool = False,
        register: Callable[[], int] | None = None,
    ) -> AttachResult:
        """Govern the process, or record why not. A retry (`attempt` > 0) or a recovery
        (`look_first`) starts from what the kernel says: a process already in its job cgroup
        with the limits it is to have is recorded as attached, without another try.

        A process seen for the first time has no row yet (`process_id` None): `register`
        makes it once the cgroup work is done, whatever its outcome, so no database write
        stands between a new process and its limits. A crash in between leaves it in its job
        cgroup without a row; the next start's scan finds it there and records it, attached."""
        when = utc(now.wall)
        try:
            # Whatever asked (a scan, a retry, a recovery of an old row): init, kernel threads,
            # ffrtmp and its ancestors are never moved.
            check_never(identity.pid)
        except AttachRefused as refused:
            process_id = _row(process_id, register)
            self.store.record_observed(process_id, reason=str(refused), now=when)
            return AttachResult(ProcessState.OBSERVED, error=str(refused), process_id=process_id)
        if self.unavailable_reason is not None:
            # Said loudly once at start-up; each process is recorded as followed without limits.
            process_id = _row(process_id, register)
            self._write(
                f"the observation of {identity}",
                lambda: self.store.record_observed(
                    process_id, reason=self.unavailable_reason, now=when
                ),
                now,
            )
            return AttachResult(
                ProcessState.OBSERVED, error=self.unavailable_reason, process_id=process_id
            )
        moved_at = when  # found already in place: as of now
        try:
            attachment = None
            if attempt > 0 or look_first:
                attachment = self.governor.governed_as(identity, job_id)
                if attachment is not None and attachment.applied != limits:
                    attachment = None  # in its cgroup, not yet with these limits: apply them
            if attachment is None:
                started = self.clock.now()
                attachment = self.governor.attach(identity, job_id, limits)
                # attached_at is when the pid moved in: `now` and the time the cgroup work
                # took (its row's discovered_at is `now`).
                moved_at = utc((now + self.clock.now().seconds_since(started)).wall)
        except Exception as exc:  # every failure is classified and recorded, none is fatal
            process_id = _row(process_id, register)
            return self._failed(process_id, identity, job_id, classify(exc), now, attempt)
        process_id = _row(process_id, register)
        process_peak = peak_resident_bytes(identity)  # what it held before and at the attach
        self._write(
            f"the attach of {identity}",
            lambda: self.store.record_attached(
                process_id,
                cgroup_version=attachment.version,
                cgroup_paths=attachment.cgroup_paths,
                applied=attachment.applied,
                now=moved_at,
                attempt=attempt,
                origin_cgroups=dict(getattr(attachment, "origin", ())) or None,
                memory_charge_moved=getattr(attachment, "memory_charge_moved", None),
                process_peak_rss_bytes=process_peak,
            ),
            now,
        )
        if self.health is not None:
            self.health.record_attach(True, now)
        log.info("attached %s as %s: %s", identity, job_id, attachment.applied.describe())
        return AttachResult(
            ProcessState.ATTACHED,
            cgroup_paths=tuple(attachment.cgroup_paths),
            process_id=process_id,
        )

    def _failed(
        self,
        process_id: int,
        identity: ProcessIdentity,
        job_id: str,
        error: Classification,
        now: Moment,
        attempt: int,
    ) -> AttachResult:
        when = utc(now.wall)
        if error.target_gone:
            # Thumbnails, probes, a client that hung up: a process that ended before its attach
            # completed is a normal outcome, not an error, and says nothing about our health.
            # The caller records how it ended (vanished); a pending retry item ends with it.
            if self._pid_reused(identity):
                self.store.cancel_retry(process_id, reason=CANCEL_REASON_PID_REUSED, now=when)
            log.info("%s (%s) ended before it could be attached", identity, job_id)
            return AttachResult(ProcessState.VANISHED, error=VANISHED_REASON, process_id=process_id)
        outcome = self.store.record_attach_failure(
            process_id,
            error,
            now=when,
            policy=self.policy,
            retry_enabled=self.retry_enabled,
            attempt=attempt,
            rng=self.rng,
        )
        if self.health is not None:
            self.health.record_attach(False, now)
            self.health.record_error(str(error.error_type))
        if outcome.state == "pending":
            what_next = f"retry {outcome.attempt + 1} at {outcome.next_attempt_at:%H:%M:%S} UTC"
        elif outcome.state == "dead":
            what_next = "no retry left"
        else:
            what_next = "not retried; followed without limits"
        log.warning(
            "attach of %s (%s) failed: %s [%s]; %s",
            identity,
            job_id,
            error.message,
            error.error_type,
            what_next,
        )
        if outcome.state == "pending":
            return AttachResult(
                ProcessState.RETRYING, error=error.message, retry=outcome, process_id=process_id
            )
        if outcome.state == "dead":
            log.error(
                "dead letter: %s (%s) runs without its limits after %d attempts (%s); "
                "see `ffrtmp retries list`",
                identity,
                job_id,
                outcome.attempt + 1,
                error.message,
            )
            return AttachResult(
                ProcessState.DEAD, error=error.message, retry=outcome, process_id=process_id
            )
        self.store.record_observed(process_id, reason=f"attach failed: {error.message}", now=when)
        return AttachResult(
            ProcessState.OBSERVED, error=error.message, retry=outcome, process_id=process_id
        )

    @staticmethod
    def _pid_reused(identity: ProcessIdentity) -> bool:
        now_there = current_identity(identity.pid)
        return now_there is not None and now_there != identity


def _row(process_id: int | None, register: Callable[[], int] | None) -> int:
    if process_id is not None:
        return process_id
    if register is None:
        raise ValueError("a process without a row needs `register`")
    return register()
