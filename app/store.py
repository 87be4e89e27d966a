"""The daemon's reads and writes, and the operator's writes of a process row (`release`,
`attach`). The other modules that talk SQL each have one job: the read commands'
queries (ffrtmp.queries, ffrtmp.stored_health), the retry queue's actions (ffrtmp.operator_actions,
through unit() and the pieces at the end of this module), pruning (ffrtmp.prune), `ffrtmp sql`
(ffrtmp.operator_sql), and shipping (ffrtmp.fleet). No other module writes a row.

Each public method is one unit of work in one transaction, so a crash leaves either all of
it or none of it. Writes begin IMMEDIATE (unit()); pure reads begin deferred (reading()), so
they take no write lock and answer while another connection holds it. The failpoint
`store.commit` fails the commit of any of them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Protocol, get_args, get_type_hints

from sqlalchemy import Engine, Integer, bindparam, func, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from ffrtmp import failpoints, queries
from ffrtmp.candidate import Candidate
from ffrtmp.database import for_reading, unsynced_commits
from ffrtmp.identity import ProcessIdentity
from ffrtmp.limits import Limits
from ffrtmp.models import (
    DaemonRun,
    ErrorEvent,
    HealthSnapshot,
    Process,
    ProcessEvent,
    RetryItem,
    Scan,
)
from ffrtmp.process_text import stored_argv
from ffrtmp.states import EventKind, ProcessState, RetryState

# The failure counters of a health snapshot, stored under these column names.
FAILURE_COUNTERS = (
    "consecutive_scan_failures",
    "consecutive_attach_failures",
    "total_scan_failures",
    "total_attach_failures",
)

# Why a dead letter was closed (retry_items.closed_reason).
DEAD_LETTER_CLOSED_EXITED = "process exited"

# States of a process the daemon still follows (or must look at again after a restart).
UNFINISHED_STATES = (
    ProcessState.DISCOVERED,
    ProcessState.ATTACHED,
    ProcessState.OBSERVED,
    ProcessState.RETRYING,
    ProcessState.DETACHED,
)

# States of a process that sits in its job cgroups by ffrtmp's record.
GOVERNED_STATES = (ProcessState.ATTACHED, ProcessState.DETACHED)


class ErrorLike(Protocol):
    error_type: Any
    retryable: bool
    errno: int | None
    errno_name: str | None
    exception: str | None
    message: str
    target_gone: bool


class DelayPolicy(Protocol):
    max_attempts: int

    def delay(self, attempt: int, rng: random.Random | None = None) -> float: ...


@dataclass(frozen=True)
class TrackedProcess:
    process_id: int
    identity: ProcessIdentity
    command: str
    rule: str | None
    job_id: str
    state: str
    cgroup_paths: tuple[str, ...]
    started_at: datetime
    limits: Limits  # as requested when it was recorded


@dataclass(frozen=True)
class GovernedProcess:
    """A process row recorded as governed: attached, or detached by a daemon that stopped."""

    process_id: int
    identity: ProcessIdentity
    job_id: str
    cgroup_paths: tuple[str, ...]  # its job cgroups as its attach made them
    origin_cgroups: dict[str, str] | None  # where it was before, per controller key


@dataclass(frozen=True)
class DueRetry(TrackedProcess):
    """A tracked process whose pending retry item is due."""

    retry_id: int
    attempt: int
    max_attempts: int


@dataclass(frozen=True)
class RetryOutcome:
    state: str  # pending (retry scheduled), dead, cancelled, or "none" (not retryable)
    attempt: int
    next_attempt_at: datetime | None


def _tracked_fields(row: Process) -> dict[str, Any]:
    """What a TrackedProcess (and so a DueRetry) holds of its process row."""
    return dict(
        process_id=row.id,
        identity=row.identity,
        command=row.command,
        rule=row.rule,
        job_id=row.job_id,
        state=row.state,
        cgroup_paths=tuple(row.cgroup_paths or ()),
        started_at=row.started_at,
        limits=limits_from_columns(row, REQUESTED),
    )


def _due_and_unclaimed(now: datetime) -> tuple:
    """A retry item that is pending, due at `now`, and not claimed by an attempt running."""
    unclaimed = RetryItem.claimed_until.is_(None) | (RetryItem.claimed_until <= now)
    return RetryItem.state == RetryState.PENDING, RetryItem.next_attempt_at <= now, unclaimed


# The one mapping between Limits and a process row: each field `f` of Limits is stored in the
# columns `requested_f` (what the process is to get) and `applied_f` (what its cgroup read back
# after the attach). A new field needs only its two columns (ffrtmp.schema, a migration).
REQUESTED = "requested"
APPLIED = "applied"
_LIMIT_FIELDS = tuple(field.name for field in fields(Limits))
# A field that cannot be None (cpu_weight) reads a NULL column (a row recorded without limits)
# as its default; the others read NULL as "no limit".
_NULL_MEANS_DEFAULT = {
    name: getattr(Limits(), name)
    for name, kind in get_type_hints(Limits).items()
    if name in _LIMIT_FIELDS and type(None) not in get_args(kind)
}


def limit_columns(kind: str, limits: Limits | None) -> dict[str, Any]:
    """The `kind` (REQUESTED or APPLIED) columns of a process row holding `limits`; all NULL
    for None (a process recorded without limits)."""
    return {
        f"{kind}_{name}": None if limits is None else getattr(limits, name)
        for name in _LIMIT_FIELDS
    }


def limits_from_columns(row: Any, kind: str) -> Limits:
    """The limits a process row holds in its `kind` (REQUESTED or APPLIED) columns."""
    values = {name: getattr(row, f"{kind}_{name}") for name in _LIMIT_FIELDS}
    for name, default in _NULL_MEANS_DEFAULT.items():
        if values[name] is None:
            values[name] = default
    return Limits(**values)


@contextmanager
def _transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    # The failpoint `store.commit` fails the transaction just before its commit.
    with sessions() as session, session.begin():
        yield session
        failpoints.check("store.commit")


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._write_sessions = sessionmaker(engine, expire_on_commit=False)
        self._read_engine = for_reading(engine)
        self._read_sessions = sessionmaker(self._read_engine, expire_on_commit=False)
        self._unsynced_sessions = sessionmaker(unsynced_commits(engine), expire_on_commit=False)
        self._lookups = None  # a connection of its own for process_id_of, made on first use
        # Told the outcome of every write transaction (None: committed); the daemon's health
        # watches the store through it (ffrtmp.outbox, ffrtmp.health).
        self.on_write: Callable[[BaseException | None], None] | None = None

    def unit(self, *, synced: bool = True) -> AbstractContextManager[Session]:
        """One write transaction, holding the write lock from its start. `synced=False`: its
        commit is not synced to disk by itself (ffrtmp.database.unsynced_commits)."""
        sessions = self._write_sessions if synced else self._unsynced_sessions
        if self.on_write is None:
            return _transaction(sessions)
        return self._watched_unit(sessions, self.on_write)

    @contextmanager
    def _watched_unit(
        self, sessions: sessionmaker, on_write: Callable[[BaseException | None], None]
    ) -> Iterator[Session]:
        try:
            with _transaction(sessions) as s:
                yield s
        except Exception as exc:
            on_write(exc)
            raise
        on_write(None)

    def reading(self) -> AbstractContextManager[Session]:
        """One read-only transaction: no write lock, the last committed state."""
        return _transaction(self._read_sessions)

    def close(self) -> None:
        if self._lookups is not None:
            self._lookups.close()
            self._lookups = None
        self.engine.dispose()

    # --- daemon runs -------------------------------------------------------------------

    def begin_run(
        self,
        *,
        now: datetime,
        pid: int,
        hostname: str,
        version: str,
        discovery: str,
        cgroup_version: int | None,
        cgroup_parent: str | None,
        config: dict,
        once: bool = False,
    ) -> int:
        with self.unit() as s:
            run = DaemonRun(
                started_at=now,
                pid=pid,
                hostname=hostname,
                version=version,
                discovery=discovery,
                cgroup_version=cgroup_version,
                cgroup_parent=cgroup_parent,
                config=config,
                once=once,
            )
            s.add(run)
            s.flush()
            # Claims of a daemon that died mid-attempt are void: the attempt was counted.
            s.execute(
                update(RetryItem)
                .where(RetryItem.state == RetryState.PENDING, RetryItem.claimed_until.is_not(None))
                .values(claimed_until=None)
            )
            return run.id

    def update_run(self, run_id: int, **values: Any) -> None:
        with self.unit() as s:
            s.execute(update(DaemonRun).where(DaemonRun.id == run_id).values(**values))

    def end_run(self, run_id: int, *, now: datetime, reason: str) -> None:
        self.update_run(run_id, stopped_at=now, stop_reason=reason)

    # --- processes ---------------------------------------------------------------------

    def unfinished_processes(self) -> list[TrackedProcess]:
        with self.reading() as s:
            # A dead-lettered process still runs, ungoverned: its exit is recorded too.
            still_running_dead = (Process.state == ProcessState.DEAD) & Process.exited_at.is_(None)
            rows = s.scalars(
                select(Process).where(Process.state.in_(UNFINISHED_STATES) | still_running_dead)
            )
            return [TrackedProcess(**_tracked_fields(r)) for r in rows]

    def newest_event_id(self) -> int:
        with self.reading() as s:
            return s.scalar(select(func.max(ProcessEvent.id))) or 0

    def attached_after(self, event_id: int) -> tuple[list[TrackedProcess], int]:
        """Processes whose limits were applied (by whoever: the daemon or `ffrtmp attach`) in
        an event after `event_id` and that are still attached, with the newest such event id.

        A cursor on event ids cannot miss a late commit as a time window can: writers take the
        write lock in turn, and SQLite numbers a new row past every row committed before it."""
        with self.reading() as s:
            applied = select(ProcessEvent.process_id, ProcessEvent.id).where(
                ProcessEvent.id > event_id, ProcessEvent.kind == EventKind.LIMITS_APPLIED
            )
            found = s.execute(applied).all()
            if not found:
                return [], event_id
            ids = {process_id for process_id, _ in found}
            rows = s.scalars(
                select(Process).where(Process.id.in_(ids), Process.state == ProcessState.ATTACHED)
            )
            tracked = [TrackedProcess(**_tracked_fields(r)) for r in rows]
            return tracked, max(event for _, event in found)

    def register(
        self,
        candidate: Candidate,
        *,
        job_id: str,
        limits: Limits | None,
        now: datetime,
        state: ProcessState = ProcessState.DISCOVERED,
        reason: str | None = None,
        details: dict | None = None,
        synced: bool = True,
    ) -> tuple[int, bool]:
        """Record a process instance once; returns (process id, whether it is new).

        `synced=False` for a row whose attach follows at once: every outcome of an attach is
        committed synced, and that commit takes this one to the disk with it, so the row is
        not worth a sync of its own ahead of the move into the cgroup."""
        ident = candidate.identity
        argv = stored_argv(candidate.argv)
        values = dict(
            boot_id=ident.boot_id,
            pid=ident.pid,
            start_ticks=ident.start_ticks,
            started_at=ident.started_at_when(now.timestamp()),
            command=candidate.command,
            argv=argv.argv,
            argv_bytes=argv.total_bytes,
            argv_sha256=argv.sha256,
            exe=candidate.exe,
            ppid=candidate.ppid,
            uid=candidate.uid,
            user=candidate.user,
            cwd=candidate.cwd,
            rule=candidate.rule,
            job_id=job_id,
            state=state,
            state_reason=reason,
            **limit_columns(REQUESTED, limits),
            discovered_at=now,
            last_seen_at=now,
        )
        with self.unit(synced=synced) as s:
            stmt = (
                sqlite_insert(Process)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["boot_id", "pid", "start_ticks"])
                .returning(Process.id)
            )
            inserted = s.execute(stmt).scalar_one_or_none()
            if inserted is None:
                existing = s.execute(
                    select(Process.id).where(
                        Process.boot_id == ident.boot_id,
                        Process.pid == ident.pid,
                        Process.start_ticks == ident.start_ticks,
                    )
                ).scalar_one()
                return existing, False
            kind = EventKind.FILTERED_OUT if state == ProcessState.SKIPPED else EventKind.DISCOVERED
            event_details: dict[str, Any] = {"rule": candidate.rule}  # argv is in its row
            if reason:
                event_details["reason"] = reason
            if details:
                event_details.update(details)
            add_event(s, inserted, kind, now, event_details)
            return inserted, True

    def process_id_of(self, ident: ProcessIdentity) -> int | None:
        """The row of this very process, if there is one.

        On the way of every new process to its limits, so one indexed lookup as plain SQL on
        a driver connection kept for it, in autocommit (the driver opens no transaction, the
        statement reads the last committed state): microseconds, where a session or even a
        pooled Core connection costs a third of a millisecond on a busy node."""
        if self._lookups is None:
            self._lookups = self._read_engine.raw_connection()
        cursor = self._lookups.cursor()
        try:
            cursor.execute(
                "SELECT id FROM processes WHERE boot_id = ? AND pid = ? AND start_ticks = ?",
                (ident.boot_id, ident.pid, ident.start_ticks),
            )
            rows = cursor.fetchall()
        finally:
            cursor.close()
        return rows[0][0] if rows else None

    def attach_was_cut_short(self, process_id: int, job_prefix: str) -> bool:
        """True for a row of ours still 'discovered': its attach never recorded an outcome."""
        with self.reading() as s:
            row = s.execute(
                select(Process.state, Process.job_id).where(Process.id == process_id)
            ).first()
        return (
            row is not None
            and row.state == ProcessState.DISCOVERED
            and row.job_id.startswith(job_prefix)
        )

    def record_attached(
        self,
        process_id: int,
        *,
        cgroup_version: int,
        cgroup_paths: Iterable[str],
        applied: Limits,
        now: datetime,
        attempt: int = 0,
        origin_cgroups: dict[str, str] | None = None,
        memory_charge_moved: bool | None = None,
        process_peak_rss_bytes: int | None = None,
    ) -> None:
        """`origin_cgroups`: where the process came from; None keeps what was recorded (a
        process found already in its job cgroup came from where an earlier attempt said).
        `memory_charge_moved`, `process_peak_rss_bytes` (VmHWM at the attach): None keeps
        what was recorded."""
        paths = list(cgroup_paths)
        origin = {} if origin_cgroups is None else {"origin_cgroups": dict(origin_cgroups)}
        memory = {
            name: value
            for name, value in (
                ("memory_charge_moved", memory_charge_moved),
                ("process_peak_rss_bytes", process_peak_rss_bytes),
            )
            if value is not None
        }
        with self.unit() as s:
            s.execute(
                update(Process)
                .where(Process.id == process_id)
                .values(
                    **origin,
                    **memory,
                    state=ProcessState.ATTACHED,
                    state_reason=None,
                    attached_at=now,
                    last_seen_at=now,
                    cgroup_version=cgroup_version,
                    cgroup_paths=paths,
                    **limit_columns(APPLIED, applied),
                )
            )
            details = {"attempt": attempt, "cgroups": paths, "limits": applied.as_dict()}
            add_event(s, process_id, EventKind.LIMITS_APPLIED, now, details)
            _finish_pending_retry(s, process_id, RetryState.SUCCEEDED, "attached", now)

    def record_observed(self, process_id: int, *, reason: str, now: datetime) -> None:
        """Followed to its exit without limits: never reported as attached."""
        with self.unit() as s:
            s.execute(
                update(Process)
                .where(Process.id == process_id)
                .values(state=ProcessState.OBSERVED, state_reason=reason, last_seen_at=now)
            )
            add_event(s, process_id, EventKind.OBSERVED_WITHOUT_LIMITS, now, {"reason": reason})

    def record_attach_failure(
        self,
        process_id: int,
        error: ErrorLike,
        *,
        now: datetime,
        policy: DelayPolicy,
        retry_enabled: bool,
        attempt: int = 0,
        rng: random.Random | None = None,
    ) -> RetryOutcome:
        """The error event, the retry item and the process state change together.

        `attempt` is the retry attempt that failed (0 for the first attach). A process that is
        gone is no failure of ours: its caller records it as vanished instead."""
        with self.unit() as s:
            process = s.get(Process, process_id)
            self._add_error(
                s, "attach", error, now, process_id=process_id, pid=process.pid if process else None
            )
            failure = {
                "attempt": attempt,
                "error_type": str(error.error_type),
                "errno": error.errno_name,
                "message": error.message,
                "retryable": error.retryable,
            }
            add_event(s, process_id, EventKind.ATTACH_FAILED, now, failure)
            item = _retry_item(s, process_id)
            message = f"{error.errno_name + ': ' if error.errno_name else ''}{error.message}"
            if item is not None:
                item.last_error, item.last_error_type = message, str(error.error_type)
                item.updated_at, item.claimed_until = now, None
            if not (error.retryable and retry_enabled):
                reason = "not retryable" if not error.retryable else "retry disabled"
                if item is not None and item.state == RetryState.PENDING:
                    _dead_letter(s, item, f"{reason}: {message}", message, now)
                    return RetryOutcome(RetryState.DEAD, attempt, None)
                return RetryOutcome("none", attempt, None)
            if item is None:
                item = RetryItem(
                    process_id=process_id,
                    operation="attach",
                    state=RetryState.PENDING,
                    attempt=0,
                    max_attempts=policy.max_attempts,
                    created_at=now,
                    updated_at=now,
                    last_error=message,
                    last_error_type=str(error.error_type),
                )
                s.add(item)
            if attempt >= item.max_attempts:
                _dead_letter(s, item, "max attempts reached", message, now)
                return RetryOutcome(RetryState.DEAD, attempt, None)
            delay = policy.delay(attempt + 1, rng)
            item.next_attempt_at = now + timedelta(seconds=delay)
            item.state = RetryState.PENDING
            _set_state(s, process_id, ProcessState.RETRYING, message)
            schedule = {
                "next_attempt": attempt + 1,
                "delay_s": round(delay, 3),
                "next_attempt_at": item.next_attempt_at.isoformat(),
            }
            add_event(s, process_id, EventKind.RETRY_SCHEDULED, now, schedule)
            return RetryOutcome(RetryState.PENDING, attempt, item.next_attempt_at)

    def due_retries(self, now: datetime, limit: int = 100) -> list[DueRetry]:
        with self.reading() as s:
            rows = s.execute(
                select(RetryItem, Process)
                .join(Process, Process.id == RetryItem.process_id)
                .where(*_due_and_unclaimed(now))
                .order_by(RetryItem.next_attempt_at)
                .limit(limit)
            ).all()
            return [
                DueRetry(
                    **_tracked_fields(process),
                    retry_id=item.id,
                    attempt=item.attempt,
                    max_attempts=item.max_attempts,
                )
                for item, process in rows
            ]

    def next_retry_at(self) -> datetime | None:
        with self.reading() as s:
            return s.scalar(
                select(func.min(RetryItem.next_attempt_at)).where(
                    RetryItem.state == RetryState.PENDING
                )
            )

    def shift_pending_retries(self, seconds: float) -> int:
        """Move the due time of every pending retry by `seconds`: the wall clock was stepped
        by that much, and a retry due in 5 s stays due in 5 s. Returns how many moved."""
        with self.unit() as s:
            items = s.scalars(
                select(RetryItem).where(
                    RetryItem.state == RetryState.PENDING, RetryItem.next_attempt_at.is_not(None)
                )
            ).all()
            for item in items:
                item.next_attempt_at += timedelta(seconds=seconds)
            return len(items)

    def claim_retry(self, retry_id: int, *, now: datetime, claim_seconds: float) -> int | None:
        """Atomically take a due item and count the attempt before it runs, so a crash in
        the middle of an attempt can never make the count go backwards. Returns the attempt
        number now running, or None if another worker has it or it is no longer due."""
        with self.unit() as s:
            attempt = s.execute(
                update(RetryItem)
                .where(RetryItem.id == retry_id, *_due_and_unclaimed(now))
                .values(
                    attempt=RetryItem.attempt + 1,
                    last_attempt_at=now,
                    updated_at=now,
                    claimed_until=now + timedelta(seconds=claim_seconds),
                )
                .returning(RetryItem.attempt)
            ).scalar_one_or_none()
            return attempt

    def dead_letter_exhausted(self, *, now: datetime) -> int:
        """Dead-letter the pending items that have had all their attempts: a last attempt cut
        short by a crash was counted (claim_retry) but its failure never recorded. Returns how
        many."""
        with self.unit() as s:
            items = s.scalars(
                select(RetryItem).where(
                    RetryItem.state == RetryState.PENDING,
                    RetryItem.attempt >= RetryItem.max_attempts,
                )
            ).all()
            for item in items:
                reason = "max attempts reached (the last one was interrupted)"
                _dead_letter(s, item, reason, item.last_error or "", now)
            return len(items)

    def reconsider_skipped(self, process_id: int, limits: Limits, *, now: datetime) -> bool:
        """A process a filter skipped, to be governed after all (the configuration was
        reloaded): back to discovered, with the limits it is to get. False when the row is not
        a skipped process that still runs."""
        with self.unit() as s:
            changed = s.execute(
                update(Process)
                .where(
                    Process.id == process_id,
                    Process.state == ProcessState.SKIPPED,
                    Process.exited_at.is_(None),
                )
                .values(
                    state=ProcessState.DISCOVERED,
                    state_reason=None,
                    **limit_columns(REQUESTED, limits),
                )
            ).rowcount
            if changed:
                add_event(s, process_id, EventKind.RECONSIDERED, now)
            return bool(changed)

    def take_over(
        self, process_id: int, *, job_id: str, limits: Limits, now: datetime, by: str
    ) -> bool:
        """An operator governs a process the daemon recorded but did not govern (a filter
        skipped it, or it was released): back to discovered under `job_id` with `limits`.
        False when the row is not such a process that still runs."""
        with self.unit() as s:
            changed = s.execute(
                update(Process)
                .where(
                    Process.id == process_id,
                    Process.state.in_((ProcessState.SKIPPED, ProcessState.RELEASED)),
                    Process.exited_at.is_(None),
                )
                .values(
                    state=ProcessState.DISCOVERED,
                    state_reason=None,
                    job_id=job_id,
                    **limit_columns(REQUESTED, limits),
                )
            ).rowcount
            if changed:
                add_event(s, process_id, EventKind.RECONSIDERED, now, {"by": by, "job_id": job_id})
            return bool(changed)

    def record_released(
        self, process_id: int, *, moved_to: dict[str, str], now: datetime, by: str
    ) -> None:
        """Moved out of its job cgroup by an operator: no longer governed nor followed."""
        with self.unit() as s:
            _set_state(s, process_id, ProcessState.RELEASED, f"released by {by}")
            add_event(s, process_id, EventKind.RELEASED, now, {"moved_to": moved_to, "by": by})
            _finish_pending_retry(s, process_id, RetryState.CANCELLED, "released", now)

    def record_cgroup_removed(
        self, process_id: int, *, job_id: str, cgroups: Sequence[str], now: datetime
    ) -> None:
        """The job cgroups of an ended or released process are gone: a `cgroup_removed` event.
        Nothing for a row pruned while its cgroup was still busy: no trail to add to."""
        with self.unit() as s:
            if s.get(Process, process_id) is None:
                return
            details = {"job_id": job_id, "cgroups": list(cgroups)}
            add_event(s, process_id, EventKind.CGROUP_REMOVED, now, details)

    def governed(
        self, *, pid: int | None = None, job_id: str | None = None
    ) -> list[GovernedProcess]:
        """The rows recorded as governed with this pid (or this job id), newest first: the
        older rows of a pid are other processes, ended or of an earlier boot."""
        where = Process.pid == pid if job_id is None else Process.job_id == job_id
        with self.reading() as s:
            rows = s.scalars(
                select(Process)
                .where(Process.state.in_(GOVERNED_STATES), where)
                .order_by(Process.id.desc())
            )
            return [
                GovernedProcess(
                    process_id=row.id,
                    identity=row.identity,
                    job_id=row.job_id,
                    cgroup_paths=tuple(row.cgroup_paths or ()),
                    origin_cgroups=row.origin_cgroups,
                )
                for row in rows
            ]

    def released_among(self, process_ids: Iterable[int]) -> set[int]:
        """Which of these processes an operator released (the daemon stops following them)."""
        ids = list(process_ids)
        if not ids:
            return set()
        with self.reading() as s:
            return set(
                s.scalars(
                    select(Process.id).where(
                        Process.id.in_(ids), Process.state == ProcessState.RELEASED
                    )
                )
            )

    def cancel_retry(self, process_id: int, *, reason: str, now: datetime) -> bool:
        """Cancel the process's pending retry item; False when it has none."""
        with self.unit() as s:
            return _finish_pending_retry(s, process_id, RetryState.CANCELLED, reason, now)

    def record_exit(
        self,
        process_id: int,
        *,
        now: datetime,
        exit_code: int | None,
        exit_signal: int | None,
        reason: str | None,
        peak_memory_bytes: int | None = None,
        cpu_seconds: float | None = None,
        oom_killed: bool | None = None,
        state: ProcessState = ProcessState.EXITED,
        end_seen: bool = True,
    ) -> None:
        """`end_seen` False: the process ended while no daemon ran, at an unknown moment
        between the last time it was seen alive and `now`; its run_seconds ends at the former,
        which it surely ran until, rather than taking in the downtime."""
        with self.unit() as s:
            process = s.get(Process, process_id)
            if process is None or process.exited_at is not None:
                return
            ran_until = now if end_seen else min(now, process.last_seen_at)
            previous_state = process.state
            process.exited_at, process.exit_code, process.exit_signal = now, exit_code, exit_signal
            process.exit_reason = reason
            if previous_state not in (ProcessState.DEAD, ProcessState.SKIPPED):
                process.state = state
            process.last_seen_at = now
            process.run_seconds = max(0.0, (ran_until - process.started_at).total_seconds())
            # A cgroup unreadable at the end keeps the figures of the last sample.
            if peak_memory_bytes is not None:
                process.peak_memory_bytes = peak_memory_bytes
            if cpu_seconds is not None:
                process.cpu_seconds = cpu_seconds
            process.oom_killed = oom_killed
            details = {
                "exit_code": exit_code,
                "exit_signal": exit_signal,
                "previous_state": previous_state,
            }
            if reason:
                details["reason"] = reason
            kind = EventKind.VANISHED if state == ProcessState.VANISHED else EventKind.EXITED
            add_event(s, process_id, kind, now, details)
            if oom_killed:
                add_event(s, process_id, EventKind.OOM_KILLED, now)
            _finish_pending_retry(s, process_id, RetryState.CANCELLED, "target_exited", now)
            _close_dead_letter(s, process_id, DEAD_LETTER_CLOSED_EXITED, now)

    def mark_detached(self, process_ids: Iterable[int], *, now: datetime, reason: str) -> None:
        ids = list(process_ids)
        if not ids:
            return
        with self.unit() as s:
            s.execute(
                update(Process)
                .where(Process.id.in_(ids), Process.state == ProcessState.ATTACHED)
                .values(state=ProcessState.DETACHED, state_reason=reason, last_seen_at=now)
            )
            for process_id in ids:
                add_event(s, process_id, EventKind.DETACHED, now, {"reason": reason})

    def mark_adopted(self, process_id: int, *, now: datetime, state: ProcessState) -> None:
        with self.unit() as s:
            _set_state(s, process_id, state, None)
            add_event(s, process_id, EventKind.ADOPTED, now)

    def touch_seen(self, process_ids: Iterable[int], *, now: datetime) -> None:
        ids = list(process_ids)
        if ids:
            with self.unit() as s:
                s.execute(update(Process).where(Process.id.in_(ids)).values(last_seen_at=now))

    def record_usage(
        self,
        samples: Sequence[tuple[int, Any]],
        *,
        now: datetime,
        process_peaks: Mapping[int, int] | None = None,
    ) -> int:
        """The latest cgroup counters of running processes (`ffrtmp.usage`), one statement
        for all; rows whose exit is already recorded keep their final figures.
        `process_peaks`: each process's own high-water resident size (VmHWM) by row id; a
        row without one keeps the last it had."""
        table = Process.__table__
        peaks = process_peaks or {}
        statement = (
            update(table)
            .where(table.c.id == bindparam("row_id"), table.c.exited_at.is_(None))
            .values(
                usage_sampled_at=now,
                cpu_seconds=bindparam("cpu"),
                peak_memory_bytes=bindparam("peak"),
                memory_current_bytes=bindparam("current"),
                cpu_periods=bindparam("periods"),
                cpu_throttled_periods=bindparam("throttled_periods"),
                cpu_throttled_seconds=bindparam("throttled"),
                process_peak_rss_bytes=func.coalesce(
                    bindparam("process_peak", type_=Integer), table.c.process_peak_rss_bytes
                ),
            )
        )
        params = [
            {
                "row_id": process_id,
                "cpu": usage.cpu_seconds,
                "peak": usage.peak_memory_bytes,
                "current": usage.memory_current_bytes,
                "periods": usage.cpu_periods,
                "throttled_periods": usage.cpu_throttled_periods,
                "throttled": usage.cpu_throttled_seconds,
                "process_peak": peaks.get(process_id),
            }
            for process_id, usage in samples
        ]
        with self.unit() as s:
            return s.connection().execute(statement, params).rowcount

    def rules_of(self, process_ids: Iterable[int]) -> dict[int, str | None]:
        with self.reading() as s:
            rows = s.execute(select(Process.id, Process.rule).where(Process.id.in_(process_ids)))
            return {row_id: rule for row_id, rule in rows}

    # --- errors, scans, health ---------------------------------------------------------

    @staticmethod
    def _add_error(
        s: Session,
        operation: str,
        error: ErrorLike,
        now: datetime,
        process_id: int | None = None,
        pid: int | None = None,
    ) -> None:
        s.add(
            ErrorEvent(
                occurred_at=now,
                operation=operation,
                process_id=process_id,
                pid=pid,
                error_type=str(error.error_type),
                retryable=bool(error.retryable),
                errno=error.errno,
                errno_name=error.errno_name,
                exception=error.exception,
                message=error.message[:2000],
            )
        )

    def record_error(
        self,
        operation: str,
        error: ErrorLike,
        *,
        now: datetime,
        process_id: int | None = None,
        pid: int | None = None,
    ) -> None:
        with self.unit() as s:
            self._add_error(s, operation, error, now, process_id, pid)

    def record_scan(
        self,
        *,
        started_at: datetime,
        duration_ms: float,
        trigger: str,
        ok: bool,
        seen: int,
        matched: int,
        new: int,
        unreadable: int,
        errors: int,
    ) -> None:
        with self.unit() as s:
            s.add(
                Scan(
                    started_at=started_at,
                    duration_ms=duration_ms,
                    trigger=trigger,
                    ok=ok,
                    seen=seen,
                    matched=matched,
                    new=new,
                    unreadable=unreadable,
                    errors=errors,
                )
            )

    def retry_depths(self) -> dict[str, int]:
        with self.reading() as s:
            return queries.retry_depths(s.connection())

    def record_health(
        self,
        *,
        now: datetime,
        run_id: int | None,
        status: str,
        reasons: list[str],
        counters: dict,
        errors_by_type: dict,
        details: dict | None = None,
    ) -> None:
        """`counters` holds the scan times and FAILURE_COUNTERS by their column names; the
        queue depths are counted in the same transaction."""
        with self.unit() as s:
            depths = queries.retry_depths(s.connection())
            s.add(
                HealthSnapshot(
                    taken_at=now,
                    daemon_run_id=run_id,
                    status=status,
                    reasons=list(reasons),
                    last_scan_at=counters.get("last_scan_at"),
                    last_successful_scan_at=counters.get("last_successful_scan_at"),
                    status_since=counters.get("status_since"),
                    last_successful_attach_at=counters.get("last_successful_attach_at"),
                    **{name: counters.get(name, 0) for name in FAILURE_COUNTERS},
                    retry_pending=depths.get(RetryState.PENDING, 0),
                    dead_letters=depths.get(RetryState.DEAD, 0),
                    errors_by_type=dict(errors_by_type),
                    details=details,
                )
            )

    def once_summary(self, run_id: int | None) -> dict[str, int]:
        """What the scan of a `--once` run found (matched, new) and the states of the
        processes it recorded."""
        with self.reading() as s:
            run = s.get(DaemonRun, run_id) if run_id is not None else None
            summary = dict.fromkeys(
                ("matched", "new", "attached", "retrying", "dead", "skipped", "observed"), 0
            )
            summary["vanished"] = 0
            if run is None:
                return summary
            scan = s.scalars(
                select(Scan).where(Scan.started_at >= run.started_at).order_by(Scan.id.desc())
            ).first()
            if scan is not None:
                summary["matched"], summary["new"] = scan.matched, scan.new
            states = s.execute(
                select(Process.state, func.count())
                .where(Process.discovered_at >= run.started_at)
                .group_by(Process.state)
            )
            for state, count in states:
                if state in summary:
                    summary[state] += count
            return summary

    def last_health(self) -> HealthSnapshot | None:
        with self.reading() as s:
            return s.scalars(select(HealthSnapshot).order_by(HealthSnapshot.id.desc())).first()


# --- pieces of a unit of work, shared by the methods above and ffrtmp.operator_actions ---------


def add_event(
    s: Session, process_id: int, kind: EventKind, now: datetime, details: dict | None = None
) -> None:
    s.add(ProcessEvent(process_id=process_id, occurred_at=now, kind=kind, details=details))


def finish_retry(
    s: Session,
    item: RetryItem,
    state: RetryState,
    reason: str,
    now: datetime,
    event_details: dict | None = None,
) -> None:
    """Make the item final; a cancellation leaves an event (`event_details` added to it)."""
    item.state, item.final_reason = state, reason
    item.next_attempt_at, item.claimed_until, item.updated_at = None, None, now
    if state == RetryState.CANCELLED:
        details = {"reason": reason, **(event_details or {})}
        add_event(s, item.process_id, EventKind.RETRY_CANCELLED, now, details)


def _retry_item(s: Session, process_id: int) -> RetryItem | None:
    """The process's retry item, in whatever state: a process has at most one."""
    return s.scalars(select(RetryItem).where(RetryItem.process_id == process_id)).first()


def _finish_pending_retry(
    s: Session, process_id: int, state: RetryState, reason: str, now: datetime
) -> bool:
    item = _retry_item(s, process_id)
    if item is None or item.state != RetryState.PENDING:
        return False
    finish_retry(s, item, state, reason, now)
    return True


def _dead_letter(s: Session, item: RetryItem, reason: str, last_error: str, now: datetime) -> None:
    """The item joins the dead-letter list and its process says so."""
    finish_retry(s, item, RetryState.DEAD, reason, now)
    _set_state(s, item.process_id, ProcessState.DEAD, last_error)
    details = {"reason": reason, "attempts": item.attempt, "last_error": last_error}
    add_event(s, item.process_id, EventKind.DEAD_LETTERED, now, details)


def _close_dead_letter(s: Session, process_id: int, reason: str, now: datetime) -> bool:
    """A dead letter whose process ended has nothing left to act on: closed, kept as history,
    no longer counted as actionable."""
    item = _retry_item(s, process_id)
    if item is None or item.state != RetryState.DEAD or item.closed_at is not None:
        return False
    item.closed_at, item.closed_reason, item.updated_at = now, reason, now
    add_event(s, process_id, EventKind.DEAD_LETTER_CLOSED, now, {"reason": reason})
    return True


def _set_state(s: Session, process_id: int, state: ProcessState, reason: str | None) -> None:
    s.execute(
        update(Process).where(Process.id == process_id).values(state=state, state_reason=reason)
    )
