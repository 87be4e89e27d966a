"""The event drain: what the kernel's process-events socket says (ffrtmp.proc_events), handled
as it comes: an exec is looked at at once, an exit finishes a followed process with its status.

A burst of execs can queue faster than processes are attached (each attach writes cgroups and
commits). A short job may end meanwhile, and once its /proc entry is gone nobody can tell whether
it was a target. So the socket is read again before each attach and every new exec is looked at
at once; the attaches follow in order, and one that finds its process gone records it as
vanished.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from ffrtmp import defaults
from ffrtmp.candidate import Candidate
from ffrtmp.clock import Moment
from ffrtmp.daemon.admission import Admission
from ffrtmp.daemon.errors import LoopErrors
from ffrtmp.lifecycle import Lifecycle


class EventDrain:
    def __init__(
        self,
        listener,
        *,
        admission: Admission,
        lifecycle: Lifecycle,
        errors: LoopErrors,
        overflowed: Callable[[], None],
        stopping: Callable[[], bool],
    ) -> None:
        self.listener = listener  # None: discovery by full scans only
        self.admission = admission
        self.lifecycle = lifecycle
        self.errors = errors
        self._overflowed = overflowed  # for /metrics
        self._stopping = stopping  # a stop was requested
        self.overflows = 0  # reported in every health snapshot
        # Processes an exec event identified, waiting for their attach.
        self.identified: deque[Candidate] = deque()
        if listener is not None:
            listener.thread_groups = lifecycle.leader_left

    def drain(self, now: Moment, until: Moment | None = None) -> bool:
        """Handle what the kernel told us; True when events were lost and a scan is due.

        Each event is handled at its own time, `now` plus the time the drain has taken so far,
        so a long backlog does not stamp every process with the moment the step began.
        Without `until` the queue is read empty. With it, the drain stops once a batch ends at
        or after `until`, or at a stop request, and leaves the rest (events and identified
        processes alike) for the next step: a backlog never holds up a due scan, retry,
        snapshot or watchdog ping, nor SIGTERM."""
        if self.listener is None:
            return False
        from ffrtmp.proc_events import ExecEvent, ExitEvent, Overflow

        began = time.monotonic()

        def clock() -> Moment:
            return now + (time.monotonic() - began)

        lost = False
        while True:
            try:
                events = self.listener.read_events(max_events=defaults.PROC_EVENTS_PER_BATCH)
            except OSError as exc:
                self.errors.record("events", exc, clock())
                events, lost = [], True
            for event in events:
                if isinstance(event, Overflow):
                    self.overflows += 1
                    self._overflowed()
                    lost = True
                elif isinstance(event, ExecEvent):
                    candidate = self.admission.inspect(event.pid, clock())
                    if candidate is not None:
                        self.identified.append(candidate)
                elif isinstance(event, ExitEvent) and event.pid == event.tgid:
                    self.lifecycle.on_exit_event(event.pid, event.exit_status, clock())
                elif isinstance(event, ExitEvent):
                    self.lifecycle.on_thread_exit(event.tgid, event.exit_status, clock())
            if self.identified:
                self.admission.consider_safely(self.identified.popleft(), clock())
            elif not events:
                return lost
            if until is not None and (self._stopping() or clock() >= until):
                return lost

    def drain_safely(self, now: Moment, until: Moment) -> bool:
        lost = True  # unless the drain says otherwise: a scan looks at what a failure missed
        with self.errors.guard("events", now):
            lost = self.drain(now, until=until)
        return lost
