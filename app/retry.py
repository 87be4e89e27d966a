"""The retry worker: attempts due retry items through the one attach path.

An item is claimed atomically (and its attempt counted) before the attempt runs, so the scan
loop and the worker never attach the same process twice and a crash never loses a count.
"""

from __future__ import annotations

import logging

from ffrtmp import defaults
from ffrtmp.attach import VANISHED_REASON, Attacher
from ffrtmp.clock import Moment
from ffrtmp.errors import CANCEL_REASON_PID_REUSED
from ffrtmp.identity import current_identity
from ffrtmp.lifecycle import Followed, Lifecycle
from ffrtmp.states import ProcessState
from ffrtmp.store import Store
from ffrtmp.utctime import utc

log = logging.getLogger(__name__)


class RetryWorker:
    def __init__(
        self,
        store: Store,
        attacher: Attacher,
        lifecycle: Lifecycle,
        claim_seconds: float = defaults.RETRY_CLAIM_SECONDS,
    ) -> None:
        self.store = store
        self.attacher = attacher
        self.lifecycle = lifecycle
        self.claim_seconds = claim_seconds

    def run_due(self, now: Moment) -> int:
        """Attempt every item due at `now`; returns how many attempts ran."""
        ran = 0
        for due in self.store.due_retries(utc(now.wall)):
            attempt = self.store.claim_retry(
                due.retry_id, now=utc(now.wall), claim_seconds=self.claim_seconds
            )
            if attempt is None:
                continue
            there = current_identity(due.identity.pid)
            if there != due.identity:
                reason = "" if there is None else CANCEL_REASON_PID_REUSED
                self._target_gone(due, now, reason)
                continue
            ran += 1
            log.info("retry %d of %s (%s)", attempt, due.identity, due.job_id)
            result = self.attacher.attach(
                due.process_id, due.identity, due.job_id, due.limits, now=now, attempt=attempt
            )
            if result.state == ProcessState.ATTACHED:
                self.lifecycle.follow(
                    Followed(due.process_id, due.identity, due.job_id, governed=True)
                )
            elif result.state == ProcessState.VANISHED:
                self._target_gone(due, now, reason="")
        return ran

    def _target_gone(self, due, now: Moment, reason: str) -> None:
        if reason == CANCEL_REASON_PID_REUSED:
            self.store.cancel_retry(due.process_id, reason=reason, now=utc(now.wall))
        followed = self.lifecycle.by_pid.get(due.identity.pid)
        if followed is None or followed.identity != due.identity:
            followed = Followed(due.process_id, due.identity, due.job_id, governed=False)
        self.lifecycle.finish(
            followed,
            self.lifecycle.exit_info_for(due.identity, VANISHED_REASON),
            now,
            ProcessState.VANISHED,
        )
