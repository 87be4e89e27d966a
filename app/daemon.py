"""`ffrtmp watch`: the loop that owns time.

One thread does all the work: it waits on the kernel's process-events socket (when there is
one) with a timeout that ends at the next due step: a full scan, a retry, a health snapshot.
Every step gets `now` passed in, so tests control time. Signal handlers only set a flag.

`now` is a `Moment` of the daemon's clock (ffrtmp.clock): everything that waits (scans,
retries, deferrals, snapshots, health's "since the last scan") is scheduled on its monotonic
reading, so a step of the wall clock neither stops scans nor makes a day's work due at once.
Rows get its wall reading, so rows stamped at one moment carry one time. Stored retry due times
are wall times: when the loop sees the wall clock stepped, it moves them by the step
(`_follow_wall_clock`), so each keeps its delay; the in-memory due time is derived from them
against the wall reading of the moment (`Moment.at_wall`).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import select
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

from ffrtmp import __version__, defaults
from ffrtmp.attach import VANISHED_REASON, Attacher
from ffrtmp.candidate import Candidate
from ffrtmp.cgroups import job_id_for
from ffrtmp.clock import STEP_TOLERANCE_SECONDS, Clock, Moment, SystemClock, seconds_since_boot
from ffrtmp.errors import classify
from ffrtmp.health import HealthTracker, SnapshotSchedule
from ffrtmp.identity import ProcessIdentity, boot_id
from ffrtmp.lifecycle import REASON_DAEMON_DOWN, REASON_REBOOTED, Followed, Lifecycle
from ffrtmp.outbox import Outbox, is_store_failure
from ffrtmp.retry import RetryWorker
from ffrtmp.states import ProcessState
from ffrtmp.store import Store
from ffrtmp.utctime import utc

log = logging.getLogger(__name__)

JOB_PREFIX = "auto"
# Keys a running daemon cannot change: its discovery socket and its cgroups are set up once.
RESTART_ONLY_KEYS = ("discovery", "cgroup")
PRUNE_BATCHES_PER_STEP = 4
PRUNE_INTERVAL_SECONDS = 3600.0


class Daemon:
    def __init__(
        self,
        config,
        store: Store,
        governor,
        scanner,
        *,
        listener=None,
        discovery: str = "poll",
        once: bool = False,
        config_summary: dict | None = None,
        notifier=None,
        daemon_lock=None,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or SystemClock()
        self._wall_offset = self.clock.now().offset  # followed by _follow_wall_clock
        self.config = config
        self.store = store
        self.governor = governor
        self.scanner = scanner
        self.listener = listener
        self.discovery = discovery
        self.once = once
        self.config_summary = config_summary or {}
        self.notifier = notifier
        self.daemon_lock = daemon_lock  # one daemon per database (ffrtmp.daemon_lock)
        self.database_description = "?"  # for the ready line; set by ffrtmp.service
        self.scans_run = 0
        self.event_overflows = 0  # reported in every health snapshot
        self.health = HealthTracker(config.health.thresholds, started_at=self.clock.now())
        self.snapshots = SnapshotSchedule(config.health.snapshot_interval)
        from ffrtmp.metrics import Metrics

        self.metrics = Metrics(self)
        self.http_server = None
        self.http_endpoint = None  # ffrtmp.http.Endpoint of --http: binds again until it can
        self.unavailable = governor.check() if governor is not None else "no cgroup governor"
        # Governing never waits for the database: what it refuses waits here (ffrtmp.outbox).
        self.outbox = Outbox()
        self.attacher = Attacher(
            store,
            governor,
            config.retry.policy,
            retry_enabled=config.retry.enabled,
            health=self.health,
            unavailable_reason=self.unavailable,
            outbox=self.outbox,
        )
        self.lifecycle = Lifecycle(store, governor, outbox=self.outbox)
        if listener is not None:
            listener.thread_groups = self.lifecycle.leader_left
        self.retries = RetryWorker(store, self.attacher, self.lifecycle)
        from ffrtmp.usage import UsageSampler

        self.usage = UsageSampler(
            store,
            None if self.unavailable else governor,
            followed=lambda: self.lifecycle.by_pid.values(),
            rule_names=lambda: self.config.target_commands,
            interval=config.usage_interval,
            # Errors are the loop's to record, at the moment the loop takes them up.
            on_error=lambda exc, _sampled_at: self._on_loop_thread(
                lambda: self._record_error("usage", exc, self.clock.now())
            ),
            clock=self.clock,
        )
        store.on_write = lambda exc: self._on_loop_thread(lambda: self._store_write_result(exc))
        # The outbox and health are the loop's own: what another thread (the usage sampler)
        # has to tell them waits here for the loop's next step.
        self._loop_thread: int | None = None
        self._handed_over: deque[Callable[[], None]] = deque()
        # Identities decided for good (skipped, vanished, owned elsewhere) -> process id;
        # forgotten once their pid leaves the process table, so it never outgrows the table.
        self.settled: dict[ProcessIdentity, int] = {}
        self.deferred: dict[ProcessIdentity, Moment] = {}  # min_runtime not reached: until when
        # The settled ones a filter skipped: looked at again after a reload.
        self.skipped: set[ProcessIdentity] = set()
        # Processes an exec event identified, waiting for their attach (see _drain_events).
        self._identified: deque[Candidate] = deque()
        self.run_id: int | None = None
        self.stop_requested = 0
        self.next_scan_at: Moment | None = None  # None: at once
        self.next_retry_at: Moment | None = None
        self.reload_requested = False
        self.next_prune_at: Moment | None = None
        self._others_cursor = 0  # an event id, set at start(): recovery covers rows before it
        # Job cgroups recovery found holding a process no row speaks of: an attach cut short
        # between the move and its row. The scan that finds the process records what the
        # kernel shows, without another try (ffrtmp.attach: register after the move).
        self._moved_without_row: set[str] = set()
        self._wakeup: tuple[int, ...] = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wakeup_installed = False  # signals write to _wakeup[1] to end the loop's wait

    # --- signals -------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def on_stop(signum: int, _frame: object) -> None:
            self.stop_requested += 1
            if self.stop_requested > 1:
                log.warning("second %s: stopping at once", signal.Signals(signum).name)
                raise SystemExit(128 + signum)
            log.info("%s: finishing the current step, then stopping", signal.Signals(signum).name)

        def on_hup(_signum: int, _frame: object) -> None:
            self.reload_requested = True

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)
        signal.set_wakeup_fd(self._wakeup[1], warn_on_full_buffer=False)
        self._wakeup_installed = True

    # --- start-up ------------------------------------------------------------------------

    def start(self, now: Moment) -> None:
        def begin_run() -> None:
            self.run_id = self.store.begin_run(
                now=utc(now.wall),
                pid=os.getpid(),
                hostname=socket.gethostname(),
                version=__version__,
                discovery=self.discovery,
                cgroup_version=getattr(self.governor, "version", None),
                cgroup_parent=str(getattr(self.governor, "parent_description", "") or "") or None,
                config=self.config_summary,
                once=self.once,
            )

        if not self.outbox.write("the start of this run", begin_run, now):
            log.error(
                "the database cannot be written (%s): governing all the same; what happens is "
                "kept in memory and recorded once it takes writes again",
                self.health.evaluate(now).store_failure,
            )
        if self.unavailable:
            log.error(
                "NO RESOURCE LIMITS WILL BE APPLIED: %s. Processes are recorded as observed.",
                self.unavailable,
            )
        self._restore_health_totals(now)
        self._others_cursor = self.store.newest_event_id()
        recovered = self.recover(now)
        # After recovery, which has cancelled the items of processes that exited meanwhile.
        exhausted: list[int] = []
        wall = now.wall
        self.outbox.write(
            "dead-lettering exhausted retries",
            lambda: exhausted.append(self.store.dead_letter_exhausted(now=utc(wall))),
            now,
        )
        if exhausted and exhausted[0]:
            log.error(
                "dead letter: %d retry items whose last attempt was cut short by the last stop; "
                "see `ffrtmp retries list`",
                exhausted[0],
            )
        self.next_retry_at = self._next_retry(now)
        pending = self.store.retry_depths().get("pending", 0)
        log.info(
            "recovery: %d adopted, %d attached again, %d followed without limits, %d closed "
            "(ended while no daemon ran), %d retries pending",
            recovered["adopted"],
            recovered["attached"],
            recovered["followed"],
            recovered["closed"],
            pending,
        )

    def _restore_health_totals(self, now: Moment) -> None:
        """The totals go on across restarts; the consecutive counters describe this run. They
        are taken into the tracker in place: what parts reported before start() (an HTTP
        address that could not be bound) stays reported."""
        last = self.store.last_health()
        if last is None:
            return
        details = last.details or {}
        try:
            self.health.resume(
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

    def recover(self, now: Moment) -> dict[str, int]:
        """Take up what an earlier run left: adopt the living, close the dead, clean up.
        Returns how many processes it adopted, attached again, followed and closed."""
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
                self._attach(
                    tracked.process_id, ident, tracked.job_id, tracked.limits, now, look_first=True
                )
        followed_jobs = {f.job_id for f in self.lifecycle.by_pid.values() if f.governed}
        for job_id, pids in leftovers.items():
            if not pids and job_id not in followed_jobs:
                self.lifecycle.release(job_id, now)
            elif pids and job_id not in recorded_jobs:
                self._moved_without_row.add(job_id)
        return counts

    def _mark_adopted(self, process_id: int, now: Moment, state: ProcessState) -> None:
        wall = now.wall
        self.outbox.write(
            f"the adoption of process {process_id}",
            lambda: self.store.mark_adopted(process_id, now=utc(wall), state=state),
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
        self.lifecycle.finish(followed, self.lifecycle.exit_info_for(ident, reason), now)

    # --- discovery -----------------------------------------------------------------------

    def full_scan(self, now: Moment, trigger: str = "periodic") -> None:
        started = time.perf_counter()
        errors = new = 0
        lost = False
        ok = True
        result = None
        try:
            # What the kernel queued since the last step is mostly about processes this walk
            # sees anyway: one batch now, the rest later, so a backlog never delays the walk.
            self._drain_events(now, until=now)
            result = self.scanner.scan()
            present = set()
            for candidate in result.matched:
                present.add(candidate.identity)
                try:
                    new += self.consider(candidate, now)
                except Exception as exc:  # one bad process must not stop the scan
                    errors += 1
                    self._record_error("scan", exc, now, pid=candidate.pid)
            self._forget_absent(present)
            self._follow_rows_of_others(now)
            drained: list[bool] = []

            def drain_to_the_end() -> None:
                # At the time the scan has reached, so exits are stamped when they were read.
                drained.append(self._drain_events(now + (time.perf_counter() - started)))

            self.lifecycle.poll(now, drain_events=drain_to_the_end)
            lost = any(drained)
            # `ffrtmp release` may have taken some back behind our back.
            self.lifecycle.unfollow(self.store.released_among(self.lifecycle.followed_ids()))
            followed_ids = self.lifecycle.followed_ids()
            seen_at = utc(now.wall)
            self.outbox.write(
                "the last-seen times",
                lambda: self.store.touch_seen(followed_ids, now=seen_at),
                now,
            )
        except Exception as exc:
            ok = False
            errors += 1
            self._record_error("scan", exc, now)
        duration_ms = (time.perf_counter() - started) * 1000
        self.scans_run += 1
        self.metrics.observe_scan(duration_ms / 1000, ok)
        self.health.record_scan(ok, now)
        try:
            scan_started_at = utc(now.wall)
            self.outbox.write(
                "a scan",
                lambda: self.store.record_scan(
                    started_at=scan_started_at,
                    duration_ms=duration_ms,
                    trigger=trigger,
                    ok=ok,
                    seen=result.seen if result else 0,
                    matched=len(result.matched) if result else 0,
                    new=new,
                    unreadable=result.unreadable if result else 0,
                    errors=errors,
                ),
                now,
            )
        except Exception as exc:
            self._record_error("store", exc, now)
        # Events lost while we walked /proc: the next scan is due at once.
        self.next_scan_at = now if lost else now + self.config.scan_interval
        try:
            # `ffrtmp retries requeue` may have added due work behind our back.
            self.next_retry_at = self._next_retry(now)
        except Exception as exc:
            self._record_error("store", exc, now)

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
        job_id = self.governor_job_id(candidate)
        wall = now.wall
        if verdict.decision == "skip":
            recorded: list[tuple[int, bool]] = []
            self.outbox.write(
                f"the skip of {ident}",
                lambda: recorded.append(
                    self.store.register(
                        candidate,
                        job_id=job_id,
                        limits=None,
                        now=utc(wall),
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
        limits = self._limits_for(candidate.rule)
        if len(self.outbox):
            # The database refuses writes (or has others to take first): govern at once.
            self._govern_unrecorded(candidate, job_id, limits, now)
            return 1
        process_id = self.store.process_id_of(ident)
        if process_id is not None:
            if ident in self.skipped and self.store.reconsider_skipped(
                process_id, limits, now=utc(wall)
            ):
                # Skipped under the configuration before a reload; the new one governs it.
                self.skipped.discard(ident)
                self._attach(process_id, ident, job_id, limits, now)
                return 0
            if self.store.attach_was_cut_short(process_id, f"{JOB_PREFIX}-"):
                # Our own attach of it failed before its outcome was stored (the store
                # refused a commit): finish it; the governor reuses the job cgroup.
                self._attach(process_id, ident, job_id, limits, now, look_first=True)
                return 0
            # Recorded by an earlier run or by `ffrtmp attach`; recovery or the retry queue
            # owns it, never a second attach here.
            self.settled[ident] = process_id
            return 0
        self.metrics.discovered()

        def register() -> int:
            # After the cgroup work: no write waits between a new process and its limits.
            # Not synced on its own: the attach's outcome, committed synced, syncs it too.
            made, _ = self.store.register(
                candidate, job_id=job_id, limits=limits, now=utc(wall), synced=False
            )
            return made

        look_first = job_id in self._moved_without_row
        self._moved_without_row.discard(job_id)
        try:
            self._attach(None, ident, job_id, limits, now, look_first=look_first, register=register)
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            # Its row was refused after the cgroup work: it is governed (the governor finds
            # its job cgroup again); the row waits in the outbox with the rest.
            self._govern_unrecorded(candidate, job_id, limits, now)
        return 1

    def _govern_unrecorded(self, candidate: Candidate, job_id: str, limits, now: Moment) -> None:
        """The database refused the process's row: govern it first, record it when the
        database takes writes again (its attach is looked up in the kernel then, so a process
        already in its cgroup is recorded as attached, and its exit follows in order)."""
        ident = candidate.identity
        wall = now.wall
        attachment = None
        if not self.unavailable:
            try:
                attachment = self.governor.attach(ident, job_id, limits)
                log.info("attached %s as %s (not recorded yet): %s", ident, job_id, limits)
            except Exception as exc:  # recorded with its row, by the attach made then
                log.warning("attach of %s (%s) failed: %s", ident, job_id, classify(exc).message)
        followed = Followed(None, ident, job_id, attachment is not None)
        self.lifecycle.follow(followed)
        self.metrics.discovered()

        def record() -> None:
            process_id, is_new = self.store.register(
                candidate, job_id=job_id, limits=limits, now=utc(wall)
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
                    now=utc(wall),
                )

        self.outbox.defer(f"the discovery of {ident}", record, now)

    def governor_job_id(self, candidate: Candidate) -> str:
        return job_id_for(JOB_PREFIX, candidate.command, candidate.identity)

    def _limits_for(self, rule: str | None):
        return self.config.limits_for(rule) if rule else self.config.default_limits

    def _attach(
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
            due = now.at_wall(result.retry.next_attempt_at.timestamp())
            self.next_retry_at = due if self.next_retry_at is None else min(self.next_retry_at, due)

    def _forget_absent(self, present: set[ProcessIdentity]) -> None:
        for ident in [i for i in self.settled if i not in present]:
            del self.settled[ident]
            self.skipped.discard(ident)
        for ident in [i for i in self.deferred if i not in present]:
            del self.deferred[ident]

    def _follow_rows_of_others(self, now: Moment) -> None:
        """Processes governed by `ffrtmp attach` while we run: follow them to their end.

        Only rows attached since the last look are read; recovery took up everything older."""
        attached, self._others_cursor = self.store.attached_after(self._others_cursor)
        for tracked in attached:
            if self.lifecycle.by_pid.get(tracked.identity.pid) is None:
                self.lifecycle.follow(
                    Followed(tracked.process_id, tracked.identity, tracked.job_id, governed=True)
                )

    # --- events --------------------------------------------------------------------------

    def _drain_events(self, now: Moment, until: Moment | None = None) -> bool:
        """Handle what the kernel told us; True when events were lost and a scan is due.

        A burst of execs can queue faster than processes are attached (each attach writes
        cgroups and commits). A short job may end meanwhile, and once its /proc entry is gone
        nobody can tell whether it was a target. So the socket is read again before each attach
        and every new exec is looked at at once; the attaches follow in order, and one that
        finds its process gone records it as vanished.

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
                self._record_error("events", exc, clock())
                events, lost = [], True
            for event in events:
                if isinstance(event, Overflow):
                    self.event_overflows += 1
                    self.metrics.overflow()
                    lost = True
                elif isinstance(event, ExecEvent):
                    candidate = self._inspect(event.pid, clock())
                    if candidate is not None:
                        self._identified.append(candidate)
                elif isinstance(event, ExitEvent) and event.pid == event.tgid:
                    self.lifecycle.on_exit_event(event.pid, event.exit_status, clock())
                elif isinstance(event, ExitEvent):
                    self.lifecycle.on_thread_exit(event.tgid, event.exit_status, clock())
            if self._identified:
                self._consider_safely(self._identified.popleft(), clock())
            elif not events:
                return lost
            if until is not None and (self.stop_requested or clock() >= until):
                return lost

    def _inspect(self, pid: int, now: Moment) -> Candidate | None:
        try:
            return self.scanner.inspect(pid)
        except Exception as exc:
            self._record_error("events", exc, now, pid=pid)
            return None

    def _consider_safely(self, candidate: Candidate, now: Moment) -> None:
        try:
            self.consider(candidate, now)
        except Exception as exc:
            self._record_error("events", exc, now, pid=candidate.pid)

    # --- the loop ------------------------------------------------------------------------

    def _follow_wall_clock(self, now: Moment) -> None:
        """A step of the wall clock moves the stored due times of pending retries with it:
        they were set as "now + delay" on the wall clock before the step. A retry queued by
        another process between the step and this look is moved too (a rare, bounded error:
        one step's size, once)."""
        stepped, self._wall_offset = now.offset - self._wall_offset, now.offset
        if abs(stepped) < STEP_TOLERANCE_SECONDS:
            return  # NTP's slewing, not a step
        try:
            moved = self.store.shift_pending_retries(stepped)
        except Exception as exc:
            self._record_error("store", exc, now)
            moved = "no"
        log.warning(
            "the wall clock was stepped by %+.3fs; %s pending retries keep their delays",
            stepped,
            moved,
        )

    def _next_retry(self, now: Moment) -> Moment | None:
        """The earliest stored retry due time, as a moment of the loop's clock."""
        at = self.store.next_retry_at()
        return now.at_wall(at.timestamp()) if at is not None else None

    def _record_error(
        self, operation: str, exc: BaseException, now: Moment, pid: int | None = None
    ) -> None:
        if is_store_failure(exc) and self.health.evaluate(now).store_failing_since is not None:
            # Counted and queued as one error event of the failing store already.
            log.warning("%s failed: the database cannot be written", operation)
            return
        error = classify(exc)
        self.health.record_error(str(error.error_type))
        log.warning(
            "%s failed%s: %s [%s]",
            operation,
            f" for pid {pid}" if pid else "",
            error.message,
            error.error_type,
        )
        try:
            wall = now.wall
            self.outbox.write(
                f"the {operation} error",
                lambda: self.store.record_error(operation, error, now=utc(wall), pid=pid),
                now,
            )
        except Exception as store_exc:  # not a store failure: the log must do
            log.error("could not record the %s error: %s", operation, store_exc)

    def _store_write_result(self, exc: BaseException | None) -> None:
        """Every write transaction's outcome: health follows the store, and each run of
        refused writes is one error event, written once the store takes writes again."""
        now = self.clock.now()
        wall = now.wall
        if exc is None:
            self.health.record_store_write(None, now)
            return
        if not is_store_failure(exc):
            return
        error = classify(exc)
        first = self.health.evaluate(now).store_failing_since is None
        self.health.record_store_write(f"{error.message} [{error.error_type}]", now)
        if first:
            self.health.record_error(str(error.error_type))
            log.error("the database cannot be written: %s [%s]", error.message, error.error_type)
            self.outbox.defer(
                "the store error",
                lambda: self.store.record_error("store", error, now=utc(wall)),
                now,
            )

    def _on_loop_thread(self, call: Callable[[], None]) -> None:
        if self._loop_thread is None or threading.get_ident() == self._loop_thread:
            call()
        else:
            self._handed_over.append(call)  # deque.append is atomic

    def step(self, now: Moment) -> None:
        """Everything that is due at `now`."""
        self._follow_wall_clock(now)
        self._loop_thread = threading.get_ident()
        while self._handed_over:
            self._handed_over.popleft()()
        if len(self.outbox):
            self.outbox.flush(now)
        if self.http_endpoint is not None:
            self.http_endpoint.retry_due(now)
        if self.next_scan_at is None or now >= self.next_scan_at:
            self.full_scan(now)
        elif self._drain_events_safely(now, until=now + self.wait_seconds(now)):
            self.full_scan(now, trigger="overflow")
        self._reconsider_deferred(now)
        # A retry claims its item in the database first: it waits while writes are refused.
        retry_due = self.next_retry_at is not None and now >= self.next_retry_at
        if retry_due and not len(self.outbox):
            try:
                self.retries.run_due(now)
            except Exception as exc:
                self._record_error("retry", exc, now)
            try:
                self.next_retry_at = self._next_retry(now)
            except Exception as exc:
                self._record_error("store", exc, now)
        self.health_tick(now)
        if self.next_prune_at is None or now >= self.next_prune_at:
            self.prune_slice(now)

    def _drain_events_safely(self, now: Moment, until: Moment) -> bool:
        try:
            return self._drain_events(now, until=until)
        except Exception as exc:  # what failed is recorded; the loop goes on governing
            self._record_error("events", exc, now)
            return True  # a scan looks at what the failed drain may have missed

    def _reconsider_deferred(self, now: Moment) -> None:
        """Processes younger than min_runtime are looked at again when they come of age,
        not a scan interval later."""
        for ident in [i for i, until in self.deferred.items() if until <= now]:
            del self.deferred[ident]
            candidate = self._inspect(ident.pid, now) if ident.is_running() else None
            if candidate is not None:
                self._consider_safely(candidate, now)

    def prune_slice(self, now: Moment) -> None:
        """Retention, a few small batches at a time so a scan never waits long behind it."""
        from ffrtmp.prune import prune

        try:
            removed = prune(
                self.store,
                self.config.retention_s,
                utc(now.wall),
                max_batches=PRUNE_BATCHES_PER_STEP,
            )
        except Exception as exc:
            self._record_error("prune", exc, now)
            self.next_prune_at = now + PRUNE_INTERVAL_SECONDS
            return
        total = sum(removed.values())
        if total:
            log.info("retention: removed %d rows older than %ss", total, self.config.retention_s)
        # A full slice means more may be left: come back soon, between other steps.
        full = total >= PRUNE_BATCHES_PER_STEP * defaults.PRUNE_BATCH_ROWS
        self.next_prune_at = now + (1.0 if full else PRUNE_INTERVAL_SECONDS)

    def health_tick(self, now: Moment) -> None:
        report = self.health.evaluate(now)
        if not self.snapshots.due(report, now):
            return
        counters = {
            "last_scan_at": _stamp(report.last_scan_at),
            "last_successful_scan_at": _stamp(report.last_successful_scan_at),
            "consecutive_scan_failures": report.consecutive_scan_failures,
            "consecutive_attach_failures": report.consecutive_attach_failures,
            "total_scan_failures": report.total_scan_failures,
            "total_attach_failures": report.total_attach_failures,
            "status_since": _stamp(report.status_since),
            "last_successful_attach_at": _stamp(report.last_successful_attach_at),
        }
        details = {
            "discovery": self.discovery,
            "total_scans": report.total_scans,
            "total_attaches": report.total_attaches,
            "event_overflows": self.event_overflows,
            "followed": len(self.lifecycle.by_pid),
            "cgroups": self.unavailable or f"v{getattr(self.governor, 'version', '?')}",
            "pid": os.getpid(),
            # What a reader of the database needs to judge this snapshot as we do.
            "thresholds": dataclasses.asdict(self.health.thresholds),
            "snapshot_interval_s": self.snapshots.interval,
        }
        try:
            taken_at = utc(now.wall)
            # Queued when refused (run_id read then: the run's row may be queued too).
            self.outbox.write(
                "a health snapshot",
                lambda: self.store.record_health(
                    now=taken_at,
                    run_id=self.run_id,
                    status=str(report.status),
                    reasons=list(report.reasons),
                    counters=counters,
                    errors_by_type=report.errors_by_type,
                    details=details,
                ),
                now,
            )
            self.snapshots.mark(report, now)
        except Exception as exc:
            self._record_error("store", exc, now)
        if self.notifier is not None:
            self.notifier.status(report, self)

    def wait_seconds(self, now: Moment) -> float:
        if self._identified:
            return 0.0  # identified processes wait for their attach
        deadlines = [now + self.snapshots.interval]
        for at in (self.next_scan_at, self.next_prune_at, self.next_retry_at):
            if at is not None:
                deadlines.append(at)
        if self.next_scan_at is None or self.next_prune_at is None:
            return 0.0
        if self.deferred:
            deadlines.append(min(self.deferred.values()))
        for retry_at in (
            self.outbox.next_try_at,
            self.http_endpoint.next_try_at if self.http_endpoint is not None else None,
        ):
            if retry_at is not None:
                deadlines.append(retry_at)
        if self.notifier is not None:
            # systemd's watchdog must hear from a healthy loop even with long scan intervals.
            ping_in = self.notifier.seconds_until_watchdog()
            if ping_in is not None:
                deadlines.append(now + ping_in)
        return max(0.0, min(deadlines).seconds_since(now))

    def run(self) -> int:
        now = self.clock.now()
        stop_reason = None
        try:
            try:
                self.start(now)
            except Exception as exc:
                stop_reason = f"start-up failed: {exc}"[:64]  # the column holds 64
                raise
            self.full_scan(now, trigger="startup")
            self.health_tick(now)
            # What start-up made (modules, the ORM's mappings) lives as long as the daemon:
            # out of the collector's sight, a full collection no longer walks it, which kept
            # a new process waiting for its limits for milliseconds now and then.
            gc.freeze()
            if self.notifier is not None:
                self.notifier.ready(self)
            if self.once:
                self._log_once_summary(now)
                return 0
            log.info(
                "ready: discovery %s, database %s, config %s, %s",
                self.discovery,
                self.database_description,
                getattr(self.config, "source", None) or "none (built-in defaults and flags)",
                self.unavailable or f"cgroup v{getattr(self.governor, 'version', '?')}",
            )
            self.usage.start()  # in a thread of its own: see ffrtmp.usage
            while not self.stop_requested:
                self._wait(self.wait_seconds(self.clock.now()))
                if self.stop_requested:
                    break
                if self.reload_requested:
                    self.reload_requested = False
                    self.reload(self.clock.now())
                self.step(self.clock.now())
                if self.notifier is not None:
                    self.notifier.watchdog(self)
            return 0
        finally:
            self.shutdown(self.clock.now(), reason=stop_reason)

    def _log_once_summary(self, now: Moment) -> None:
        """The one line a `--once` run ends with: what its scan found and did."""
        try:
            summary = self.store.once_summary(self.run_id)
        except Exception as exc:
            self._record_error("store", exc, now)
            return
        log.info(
            "once: %d matched, %d new; %d attached, %d retrying, %d dead letters, %d skipped, "
            "%d followed without limits, %d vanished; health %s",
            summary["matched"],
            summary["new"],
            summary["attached"],
            summary["retrying"],
            summary["dead"],
            summary["skipped"],
            summary["observed"],
            summary["vanished"],
            self.health.evaluate(now).status.value,
        )

    def _wait(self, timeout: float) -> None:
        """Until the timeout, a kernel event, or a signal. Python restarts a select() that a
        signal interrupted, so signals also write to a wake-up pipe that select() watches."""
        watched = [self._wakeup[0]]
        if self.listener is not None:
            watched.append(self.listener.fileno())
        ready, _, _ = select.select(watched, [], [], timeout)
        if self._wakeup[0] in ready:
            try:
                while os.read(self._wakeup[0], 512):
                    pass
            except BlockingIOError:
                pass

    def reload(self, now: Moment) -> None:
        """SIGHUP: a new config from the same file; a bad file keeps the old one. Every key
        that can change in a running daemon does; `discovery` and `cgroup` need a restart,
        and a line says so for each that changed. Processes the old filters skipped are looked
        at again under the new ones at once."""
        source = getattr(self.config, "source", None)
        if source is None:
            log.info("SIGHUP: no --watch-config file to reload")
            return
        from ffrtmp.config import ConfigError, apply_overrides, changed_keys, load_config, loosened
        from ffrtmp.scanner import Scanner

        try:
            fresh = apply_overrides(load_config(source), **getattr(self, "overrides", {}))
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            self._record_error("config", exc, now)
            return
        for line in fresh.warnings():
            log.warning("%s", line)
        from ffrtmp.logs import readable

        old = self.config
        changes = changed_keys(old, fresh)
        for key, (before, after) in changes.items():
            before, after = readable(before), readable(after)
            if key.split(".")[0] in RESTART_ONLY_KEYS:
                log.warning(
                    "reload: %s stays %s until a restart (the file now says %s)", key, before, after
                )
            else:
                log.info("reload: %s: %s -> %s", key, before, after)
        fresh = dataclasses.replace(fresh, discovery=old.discovery, cgroup=old.cgroup)
        self.config = fresh
        self.scanner = Scanner(
            fresh.rules(), proc_root=self.scanner.proc_root, self_pid=self.scanner.self_pid
        )
        self.attacher.policy = fresh.retry.policy
        self.attacher.retry_enabled = fresh.retry.enabled
        self.health.thresholds = fresh.health.thresholds
        self.snapshots.interval = fresh.health.snapshot_interval
        self.usage.set_interval(fresh.usage_interval)
        self._record_effective_config(now)
        self._record_loosened(loosened(changes), source, now)
        for ident in self.skipped:
            self.settled.pop(ident, None)
        self.next_scan_at = now  # the new rules and filters apply to what runs now
        log.info("configuration reloaded from %s", source)

    def _record_loosened(self, changes: dict, source: object, now: Moment) -> None:
        """A reload that governs less (a limit gone or raised, a target dropped) is said at
        WARNING and kept as an error event of operation `reload`: a file cut short mid-write
        is often still valid YAML."""
        if not changes:
            return
        from ffrtmp.errors import Classification
        from ffrtmp.states import ErrorType

        listed = "; ".join(
            f"{key}: {before} -> {after}" for key, (before, after) in changes.items()
        )
        message = f"the reload of {source} removed or loosened limits: {listed}"
        log.warning("%s (replace the file atomically: write a new one, then rename it)", message)
        event = Classification(ErrorType.PERMANENT, False, None, None, "LimitsLoosened", message)
        try:
            self.store.record_error("reload", event, now=utc(now.wall))
        except Exception as exc:
            log.error("could not record the loosened limits: %s", exc)

    def _record_effective_config(self, now: Moment) -> None:
        from ffrtmp.config import effective_dict

        self.config_summary = effective_dict(self.config)
        if self.run_id is None:
            return
        try:
            self.store.update_run(self.run_id, config=self.config_summary)
        except Exception as exc:
            self._record_error("store", exc, now)

    def shutdown(self, now: Moment, reason: str | None = None) -> None:
        """Leave the workloads running in their cgroups; record that we let go of them, and
        why (`reason`; by default a stop or the end of --once)."""
        if self.notifier is not None:
            self.notifier.stopping()
        self.usage.stop()
        if self.http_server is not None:
            self.http_server.close()
        if self.http_endpoint is not None:
            self.http_endpoint.close()
        try:
            if len(self.outbox) and not self.outbox.flush(now, force=True):
                log.error(
                    "stopping with %d writes the database did not take: they are lost",
                    len(self.outbox),
                )
                return  # nor would it take the stop; the next start recovers the rest
            if self.run_id is not None:
                if not self.once:
                    attached = [
                        f.process_id
                        for f in self.lifecycle.by_pid.values()
                        if f.governed and f.process_id is not None
                    ]
                    self.store.mark_detached(attached, now=utc(now.wall), reason="daemon stopped")
                reason = reason or ("once" if self.once else "stopped")
                self.store.end_run(self.run_id, now=utc(now.wall), reason=reason)
        except Exception as exc:
            log.error("could not record the stop: %s", exc)
        finally:
            self.release()

    def release(self) -> None:
        """Close what the daemon holds open; safe to call more than once."""
        if self.listener is not None:
            self.listener.close()
        if self._wakeup_installed:
            signal.set_wakeup_fd(-1)
            self._wakeup_installed = False
        for fd in self._wakeup:
            os.close(fd)
        self._wakeup = ()
        # Last: the run's end is recorded before another daemon may start on the database.
        if self.daemon_lock is not None:
            self.daemon_lock.release()


def _stamp(moment: Moment | None):
    """A moment as a row's time: its wall reading, in UTC."""
    return None if moment is None else utc(moment.wall)


def default_notifier():
    if os.environ.get("NOTIFY_SOCKET"):
        from ffrtmp.sd_notify import Notifier

        return Notifier.from_environment()
    return None
