"""The daemon: one thread that owns time, composed of parts that each do one thing.

It waits on the kernel's process-events socket (when there is one) with a timeout that ends at
the next due step: a full scan, a retry, a health snapshot, a prune. Every step gets `now`, a
`Moment` of the daemon's clock, passed in, so tests control time (`Daemon.step(now)`). Signal
handlers only set a flag.

The parts, each in a module of its own:
- `admission`: decides about each matching process and attaches it (settled, deferred, skipped);
- `events`: drains the kernel's process events (execs looked at at once, exits finished);
- `recovery`: takes up what an earlier run left, at start-up;
- `wall_clock`: follows steps of the wall clock (pending retries keep their delays);
- `retries`: when the next retry is due, and running the due ones;
- `snapshots`: health snapshots stored for `ffrtmp health` and the fleet;
- `pruning`: retention, a few small batches at a time;
- `reload`: SIGHUP's new configuration;
- `errors`: every failure recorded, programming errors counted;
- `view`: the read-only view /metrics, /healthz and systemd's status line get.

Everything that waits is scheduled on the monotonic reading of a moment, so a step of the wall
clock neither stops scans nor makes a day's work due at once; rows get its wall reading.
"""

from __future__ import annotations

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

from ffrtmp import __version__
from ffrtmp.attach import Attacher
from ffrtmp.clock import Clock, Moment, SystemClock
from ffrtmp.daemon.admission import JOB_PREFIX, Admission
from ffrtmp.daemon.errors import STORE_ERRORS, LoopErrors
from ffrtmp.daemon.events import EventDrain
from ffrtmp.daemon.pruning import PruneSchedule
from ffrtmp.daemon.recovery import Recovery, resume_health_totals
from ffrtmp.daemon.reload import reloaded_config
from ffrtmp.daemon.retries import RetrySchedule
from ffrtmp.daemon.snapshots import HealthSnapshots
from ffrtmp.daemon.view import DaemonView
from ffrtmp.daemon.wall_clock import WallClockFollower
from ffrtmp.health import HealthTracker, SnapshotSchedule
from ffrtmp.lifecycle import Lifecycle
from ffrtmp.outbox import Outbox
from ffrtmp.retry import RetryWorker
from ffrtmp.store import Store
from ffrtmp.utctime import utc

log = logging.getLogger("ffrtmp.daemon")

__all__ = ["JOB_PREFIX", "Daemon"]


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
        overrides: dict | None = None,
        http_address: str | None = None,
        database_description: str = "?",
    ) -> None:
        from ffrtmp.metrics import Metrics
        from ffrtmp.usage import UsageSampler

        self.clock = clock or SystemClock()
        first = self.clock.now()
        self.config = config
        self.overrides = dict(overrides or {})  # the command line's flags, over every reload
        self.store = store
        self.governor = governor
        self.listener = listener
        self.discovery = discovery
        self.once = once
        self.config_summary = config_summary or {}
        self.notifier = notifier
        self.daemon_lock = daemon_lock  # one daemon per database (ffrtmp.daemon_lock)
        self.database_description = database_description  # for the ready line
        self.scans_run = 0
        self.run_id: int | None = None
        self.stop_requested = 0
        self.reload_requested = False
        self.next_scan_at: Moment | None = None  # None: at once
        self.unavailable = governor.check() if governor is not None else "no cgroup governor"

        self.health = HealthTracker(config.health.thresholds, started_at=first)
        # Governing never waits for the database: what it refuses waits here (ffrtmp.outbox).
        self.outbox = Outbox()
        self.errors = LoopErrors(store, self.health, self.outbox, self.clock)
        self.wall_clock = WallClockFollower(store, self.errors, first)
        self.attacher = Attacher(
            store,
            governor,
            config.retry.policy,
            retry_enabled=config.retry.enabled,
            health=self.health,
            unavailable_reason=self.unavailable,
            outbox=self.outbox,
            clock=self.clock,
        )
        self.lifecycle = Lifecycle(store, governor, outbox=self.outbox)
        self.retries = RetryWorker(store, self.attacher, self.lifecycle)
        self.retry_schedule = RetrySchedule(store, self.retries, self.errors)
        self.usage = UsageSampler(
            store,
            None if self.unavailable else governor,
            followed=lambda: self.lifecycle.followed,
            rule_names=lambda: self.config.target_commands,
            interval=config.usage_interval,
            # Errors are the loop's to record, at the moment the loop takes them up.
            on_error=lambda exc, _sampled_at: self._on_loop_thread(
                lambda: self.errors.record("usage", exc, self.clock.now())
            ),
            clock=self.clock,
        )
        self.view = DaemonView(
            evaluate=self.health.evaluate,
            thresholds=lambda: self.health.thresholds,
            clock=self.clock,
            followed=lambda: self.lifecycle.followed,
            retry_depths=store.retry_depths,
            pending_writes=lambda: len(self.outbox),
            usage_totals=self.usage.totals,
            next_scan_at=lambda: self.next_scan_at,
            internal_errors=lambda: self.errors.internal,
            discovery=discovery,
            unavailable=self.unavailable,
        )
        self.metrics = Metrics(self.view)
        self.admission = Admission(
            config,
            scanner,
            store=store,
            governor=governor,
            unavailable=self.unavailable,
            outbox=self.outbox,
            attacher=self.attacher,
            lifecycle=self.lifecycle,
            errors=self.errors,
            discovered=self.metrics.discovered,
            retry_queued=self.retry_schedule.note,
        )
        self.events = EventDrain(
            listener,
            admission=self.admission,
            lifecycle=self.lifecycle,
            errors=self.errors,
            overflowed=self.metrics.overflow,
            stopping=lambda: bool(self.stop_requested),
        )
        self.recovery = Recovery(
            store=store,
            governor=governor,
            unavailable=self.unavailable,
            outbox=self.outbox,
            lifecycle=self.lifecycle,
            admission=self.admission,
        )
        self.snapshots = HealthSnapshots(
            health=self.health,
            schedule=SnapshotSchedule(config.health.snapshot_interval),
            store=store,
            outbox=self.outbox,
            errors=self.errors,
            run_id=lambda: self.run_id,
            details=self._snapshot_details,
            on_snapshot=(
                None if notifier is None else lambda report: notifier.status(report, self.view)
            ),
        )
        self.pruning = PruneSchedule(store, self.errors, config.retention_s)
        self.http_endpoint = None  # ffrtmp.http.Endpoint of --http: binds again until it can
        if http_address:
            from ffrtmp.http import Endpoint

            self.http_endpoint = Endpoint(
                http_address, self.view, self.metrics, report_problem=self.health.set_problem
            )
        store.on_write = lambda exc: self._on_loop_thread(
            lambda: self.errors.store_write_result(exc)
        )
        # The outbox and health are the loop's own: what another thread (the usage sampler)
        # has to tell them waits here for the loop's next step.
        self._loop_thread: int | None = None
        self._handed_over: deque[Callable[[], None]] = deque()
        self._others_cursor = 0  # an event id, set at start(): recovery covers rows before it
        self._wakeup: tuple[int, ...] = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wakeup_installed = False  # signals write to _wakeup[1] to end the loop's wait

    # --- what the parts keep, under the names tests and tools read -------------------------

    @property
    def scanner(self):
        return self.admission.scanner

    @property
    def settled(self):
        return self.admission.settled

    @property
    def deferred(self):
        return self.admission.deferred

    @property
    def skipped(self):
        return self.admission.skipped

    @property
    def event_overflows(self) -> int:
        return self.events.overflows

    @property
    def next_retry_at(self) -> Moment | None:
        return self.retry_schedule.next_at

    @property
    def next_prune_at(self) -> Moment | None:
        return self.pruning.next_at

    @next_prune_at.setter
    def next_prune_at(self, at: Moment | None) -> None:
        self.pruning.next_at = at

    def consider(self, candidate, now: Moment) -> int:
        return self.admission.consider(candidate, now)

    def governor_job_id(self, candidate) -> str:
        return self.admission.job_id(candidate)

    def prune_slice(self, now: Moment) -> None:
        self.pruning.slice(now)

    def health_tick(self, now: Moment) -> None:
        self.snapshots.tick(now)

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
        if self.http_endpoint is not None:
            # A port taken by someone else must not keep the daemon from governing: the
            # endpoint binds again with backoff, and health says it is not served until then.
            self.http_endpoint.bind(now)

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
        resume_health_totals(self.store, self.health, now)
        if self.unavailable:
            # A daemon that only observes is not doing its job: its health says so, and why.
            self.health.set_problem(
                "cgroups", f"no resource limits are applied: {self.unavailable}"
            )
        self._others_cursor = self.store.newest_event_id()
        recovered = self.recover(now)
        self.recovery.dead_letter_exhausted(now)
        self.retry_schedule.refresh(now)
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

    def recover(self, now: Moment) -> dict[str, int]:
        """Take up what an earlier run left (ffrtmp.daemon.recovery)."""
        return self.recovery.recover(now)

    # --- the loop ------------------------------------------------------------------------

    def step(self, now: Moment) -> None:
        """Everything that is due at `now`. Each part runs under a guard: whatever fails is
        recorded, and the next part runs all the same."""
        self.wall_clock.follow(now)
        self._loop_thread = threading.get_ident()
        while self._handed_over:
            self._handed_over.popleft()()
        if len(self.outbox):
            with self.errors.guard("store", now):
                self.outbox.flush(now)
        if self.http_endpoint is not None:
            with self.errors.guard("http", now):
                self.http_endpoint.retry_due(now)
        if self.next_scan_at is None or now >= self.next_scan_at:
            self.full_scan(now)
        elif self.events.drain_safely(now, until=now + self.wait_seconds(now)):
            self.full_scan(now, trigger="overflow")
        with self.errors.guard("events", now):
            self.admission.reconsider_deferred(now)
        # A retry claims its item in the database first: it waits while writes are refused.
        if self.retry_schedule.is_due(now) and not len(self.outbox):
            self.retry_schedule.run_due(now)
        with self.errors.guard("health", now):
            self.snapshots.tick(now)
        if self.pruning.is_due(now):
            with self.errors.guard("prune", now):
                self.pruning.slice(now)

    def full_scan(self, now: Moment, trigger: str = "periodic") -> None:
        started = time.perf_counter()
        errors = new = 0
        lost = False
        ok = True
        result = None
        try:
            # What the kernel queued since the last step is mostly about processes this walk
            # sees anyway: one batch now, the rest later, so a backlog never delays the walk.
            self.events.drain(now, until=now)
            result = self.admission.scanner.scan()
            present = set()
            for candidate in result.matched:
                present.add(candidate.identity)
                try:
                    new += self.admission.consider(candidate, now)
                except Exception as exc:  # one bad process must not stop the scan
                    errors += 1
                    self.errors.record("scan", exc, now, pid=candidate.pid)
            self.admission.forget_absent(present)
            self._follow_rows_of_others()
            drained: list[bool] = []

            def drain_to_the_end() -> None:
                # At the time the scan has reached, so exits are stamped when they were read.
                drained.append(self.events.drain(now + (time.perf_counter() - started)))

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
        except Exception as exc:  # the scan failed as a whole: counted, and the loop goes on
            ok = False
            errors += 1
            self.errors.record("scan", exc, now)
        duration_ms = (time.perf_counter() - started) * 1000
        self.scans_run += 1
        self.metrics.observe_scan(duration_ms / 1000, ok)
        self.health.record_scan(ok, now)
        scan_started_at = utc(now.wall)
        try:
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
        except STORE_ERRORS as exc:
            self.errors.record("store", exc, now)
        # Events lost while we walked /proc: the next scan is due at once.
        self.next_scan_at = now if lost else now + self.config.scan_interval
        # `ffrtmp retries requeue` may have added due work behind our back.
        self.retry_schedule.refresh(now)

    def _follow_rows_of_others(self) -> None:
        """Processes governed by `ffrtmp attach` while we run: follow them to their end.

        Only rows attached since the last look are read; recovery took up everything older."""
        from ffrtmp.lifecycle import Followed

        attached, self._others_cursor = self.store.attached_after(self._others_cursor)
        for tracked in attached:
            if self.lifecycle.by_pid.get(tracked.identity.pid) is None:
                self.lifecycle.follow(
                    Followed(tracked.process_id, tracked.identity, tracked.job_id, governed=True)
                )

    def wait_seconds(self, now: Moment) -> float:
        if self.events.identified:
            return 0.0  # identified processes wait for their attach
        if self.next_scan_at is None or self.pruning.next_at is None:
            return 0.0
        deadlines = [now + self.snapshots.interval, self.next_scan_at]
        for at in (
            self.pruning.next_at,
            self.retry_schedule.next_at,
            self.admission.next_deferred(),
            self.outbox.next_try_at,
            self.http_endpoint.next_try_at if self.http_endpoint is not None else None,
        ):
            if at is not None:
                deadlines.append(at)
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
            except Exception as exc:  # recorded as the stop reason, then raised
                stop_reason = f"start-up failed: {exc}"[:64]  # the column holds 64
                raise
            self.full_scan(now, trigger="startup")
            self.snapshots.tick(now)
            # What start-up made (modules, the ORM's mappings) lives as long as the daemon:
            # out of the collector's sight, a full collection no longer walks it, which kept
            # a new process waiting for its limits for milliseconds now and then.
            gc.freeze()
            if self.notifier is not None:
                self.notifier.ready(self.view)
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
                    self.notifier.watchdog(self.view)
            return 0
        finally:
            self.shutdown(self.clock.now(), reason=stop_reason)

    def _log_once_summary(self, now: Moment) -> None:
        """The one line a `--once` run ends with: what its scan found and did."""
        try:
            summary = self.store.once_summary(self.run_id)
        except STORE_ERRORS as exc:
            self.errors.record("store", exc, now)
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

    def _on_loop_thread(self, call: Callable[[], None]) -> None:
        if self._loop_thread is None or threading.get_ident() == self._loop_thread:
            call()
        else:
            self._handed_over.append(call)  # deque.append is atomic

    def _snapshot_details(self) -> dict:
        return {
            "discovery": self.discovery,
            "event_overflows": self.events.overflows,
            "followed": len(self.lifecycle.followed),
            "cgroups": self.unavailable or f"v{getattr(self.governor, 'version', '?')}",
            "internal_errors": self.errors.internal,
        }

    # --- reload --------------------------------------------------------------------------

    def reload(self, now: Moment) -> None:
        """SIGHUP (ffrtmp.daemon.reload). Processes the old filters skipped are looked at
        again under the new ones at once."""
        from ffrtmp.scanner import Scanner

        fresh = reloaded_config(self.config, self.overrides, self.store, self.errors, now)
        if fresh is None:
            return
        self.config = fresh
        scanner = self.admission.scanner
        self.admission.use(
            fresh, Scanner(fresh.rules(), proc_root=scanner.proc_root, self_pid=scanner.self_pid)
        )
        self.attacher.policy = fresh.retry.policy
        self.attacher.retry_enabled = fresh.retry.enabled
        self.health.thresholds = fresh.health.thresholds
        self.snapshots.schedule.interval = fresh.health.snapshot_interval
        self.pruning.retention_s = fresh.retention_s
        self.usage.set_interval(fresh.usage_interval)
        self._record_effective_config(now)
        self.next_scan_at = now  # the new rules and filters apply to what runs now
        log.info("configuration reloaded from %s", fresh.source)

    def _record_effective_config(self, now: Moment) -> None:
        from ffrtmp.config import effective_dict

        self.config_summary = effective_dict(self.config)
        if self.run_id is None:
            return
        try:
            self.store.update_run(self.run_id, config=self.config_summary)
        except STORE_ERRORS as exc:
            self.errors.record("store", exc, now)

    # --- stop ----------------------------------------------------------------------------

    def shutdown(self, now: Moment, reason: str | None = None) -> None:
        """Leave the workloads running in their cgroups; record that we let go of them, and
        why (`reason`; by default a stop or the end of --once)."""
        if self.notifier is not None:
            self.notifier.stopping()
        self.usage.stop()
        if self.http_endpoint is not None:
            self.http_endpoint.close()
        reason = reason or ("once" if self.once else "stopped")
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
                        for f in self.lifecycle.followed
                        if f.governed and f.process_id is not None
                    ]
                    self.store.mark_detached(attached, now=utc(now.wall), reason="daemon stopped")
                self.store.end_run(self.run_id, now=utc(now.wall), reason=reason)
        except STORE_ERRORS as exc:
            log.error("could not record the stop: %s", exc)
        finally:
            self.release()
        if not self.once:  # a --once run ends with its summary line
            log.info(
                "stopped (%s); %d followed processes keep running in their cgroups",
                reason,
                sum(1 for f in self.lifecycle.followed if f.governed),
            )

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


def default_notifier():
    if os.environ.get("NOTIFY_SOCKET"):
        from ffrtmp.sd_notify import Notifier

        return Notifier.from_environment()
    return None
