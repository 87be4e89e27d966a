"""Following governed processes to their end: exit code or signal, usage, cgroup removal.

Exit statuses come, best first, from the kernel's exit event, from the zombie's
/proc/<pid>/stat, or not at all: then the exit is stored with NULL and the reason.
A job cgroup is removed once its process ended, retried at every poll while something still
runs in it; its removal is recorded as a `cgroup_removed` event of the process, retried at
every poll too until the store takes it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ffrtmp.clock import Moment
from ffrtmp.exit_status import ExitInfo, zombie_exit_status
from ffrtmp.identity import ProcessIdentity
from ffrtmp.states import ProcessState
from ffrtmp.store import Store
from ffrtmp.utctime import utc

log = logging.getLogger(__name__)

RECENT_EXITS_KEPT = 4096
REASON_NO_EVENT_SOURCE = (
    "exit status not observable: the process was reaped by its parent before ffrtmp looked, "
    "and no exit event from the kernel was received for it"
)
REASON_DAEMON_DOWN = "exited while ffrtmp was not running"
REASON_REBOOTED = "the machine rebooted while the process was recorded as running"


@dataclass
class Followed:
    # None while the database refused the process's row: governed all the same, and recorded
    # (this field set) when the outbox writes it (ffrtmp.daemon, ffrtmp.outbox).
    process_id: int | None
    identity: ProcessIdentity
    job_id: str
    governed: bool  # it has cgroups of ours to read and remove


class Lifecycle:
    def __init__(self, store: Store, governor, outbox=None) -> None:
        self.store = store
        self.governor = governor
        # The loop's own table; other threads (the usage sampler, /metrics) read `followed`.
        self.by_pid: dict[int, Followed] = {}
        # The followed processes as an immutable tuple, replaced on every change of by_pid:
        # a reader on another thread takes it whole, without a copy that may meet a change.
        self.followed: tuple[Followed, ...] = ()
        self._recent_exits: OrderedDict[int, int] = OrderedDict()  # pid -> wait status
        # Job id -> its process row (None when unknown): cgroups not yet removed, or removed
        # but their cgroup_removed event not yet stored.
        self._pending_release: dict[str, int | None] = {}
        # Followed processes whose main thread ended (pthread_exit) while others run on: the
        # kernel sent the leader's exit event, but the process ends later, with its own status.
        # The event listener shares this set, to pass on those processes' thread exits.
        self.leader_left: set[int] = set()
        # An ffrtmp.outbox.Outbox: an exit the database refuses waits there, the process is
        # finished all the same. None: written at once, a failure raises.
        self.outbox = outbox

    def follow(self, followed: Followed) -> None:
        self.by_pid[followed.identity.pid] = followed
        self._publish()

    def _publish(self) -> None:
        self.followed = tuple(self.by_pid.values())

    def is_followed(self, identity: ProcessIdentity) -> bool:
        f = self.by_pid.get(identity.pid)
        return f is not None and f.identity == identity

    def followed_ids(self) -> list[int]:
        return [f.process_id for f in self.by_pid.values() if f.process_id is not None]

    def unfollow(self, process_ids: set[int]) -> None:
        """Stop following these processes (an operator released them): no exit is recorded
        and their cgroups are left to whoever released them."""
        for pid in [pid for pid, f in self.by_pid.items() if f.process_id in process_ids]:
            del self.by_pid[pid]
            self.leader_left.discard(pid)
        self._publish()

    def note_exit_status(self, pid: int, wait_status: int) -> None:
        """Keep an exit status from the kernel for a pid we may ask about soon (a process
        that exits while its attach is still being decided)."""
        self._recent_exits[pid] = wait_status
        self._recent_exits.move_to_end(pid)
        while len(self._recent_exits) > RECENT_EXITS_KEPT:
            self._recent_exits.popitem(last=False)

    def on_exit_event(self, pid: int, wait_status: int, now: Moment) -> bool:
        """The exit event of a thread-group leader; True when it ended a followed process."""
        followed = self.by_pid.get(pid)
        if followed is None:
            self.note_exit_status(pid, wait_status)
            return False
        if followed.identity.is_running():
            self.leader_left.add(pid)
            log.info("%s: its main thread ended, its other threads run on", followed.identity)
            return False
        self.finish(followed, ExitInfo.from_wait_status(wait_status), now)
        return True

    def on_thread_exit(self, tgid: int, wait_status: int, now: Moment) -> None:
        """A thread of a process whose main thread ended early: the last one ends it, and
        its status (that of exit() or of the killing signal) is the process's."""
        if tgid not in self.leader_left:
            return
        followed = self.by_pid.get(tgid)
        if followed is None:
            self.leader_left.discard(tgid)
            return
        # Kept for poll() too: /proc may still show the thread for a moment after its event.
        self.note_exit_status(tgid, wait_status)
        if not followed.identity.is_running():
            self.finish(followed, ExitInfo.from_wait_status(wait_status), now)

    def exit_info_for(self, identity: ProcessIdentity, reason: str) -> ExitInfo:
        status = self._recent_exits.pop(identity.pid, None)
        if status is not None:
            return ExitInfo.from_wait_status(status)
        from_zombie = zombie_exit_status(identity.pid, identity.start_ticks)
        if from_zombie is not None:
            return ExitInfo(*from_zombie)
        return ExitInfo.unknown(reason)

    def poll(self, now: Moment, drain_events: Callable[[], object] | None = None) -> int:
        """Finish every followed process that is gone (or a zombie); returns how many.

        The kernel queues a process's exit event before /proc shows it gone, so for the
        processes found gone, `drain_events` (reading that queue) finishes them with their
        real status; only those without an event are finished here."""
        gone = [f for f in self.by_pid.values() if not f.identity.is_running()]
        if gone and drain_events is not None:
            drain_events()
        for followed in gone:
            if self.by_pid.get(followed.identity.pid) is followed:
                info = self.exit_info_for(followed.identity, REASON_NO_EVENT_SOURCE)
                self.finish(followed, info, now)
        self.retry_releases(now)
        return len(gone)

    def finish(
        self,
        followed: Followed,
        info: ExitInfo,
        now: Moment,
        state: ProcessState = ProcessState.EXITED,
        end_seen: bool = True,
    ) -> None:
        """`end_seen` False: it ended while no daemon ran (Store.record_exit)."""
        usage = None
        if followed.governed:
            try:
                usage = self.governor.usage(followed.job_id)
            except OSError as exc:
                log.warning("usage of %s unreadable: %s", followed.job_id, exc)

        def write_exit() -> None:
            # Read when written: a row the outbox wrote after the exit has its id by then.
            if followed.process_id is None:
                return
            self.store.record_exit(
                followed.process_id,
                now=utc(now.wall),
                exit_code=info.exit_code,
                exit_signal=info.exit_signal,
                reason=info.reason,
                peak_memory_bytes=getattr(usage, "peak_memory_bytes", None),
                cpu_seconds=getattr(usage, "cpu_seconds", None),
                oom_killed=getattr(usage, "oom_killed", None),
                state=state,
                end_seen=end_seen,
            )

        if self.outbox is None:
            write_exit()
        else:
            self.outbox.write(f"the exit of {followed.identity}", write_exit, now)
        if self.by_pid.pop(followed.identity.pid, None) is not None:
            self._publish()
        self.leader_left.discard(followed.identity.pid)
        self._recent_exits.pop(followed.identity.pid, None)
        log.info(
            "%s (%s) ended: %s",
            followed.identity,
            followed.job_id,
            info.describe(getattr(usage, "oom_killed", None)),
        )
        if followed.governed:
            self.release(followed.job_id, now, followed.process_id)

    def release(self, job_id: str, now: Moment, process_id: int | None = None) -> None:
        """Remove the job's cgroups; until that succeeds, retry_releases() tries again.
        With the process row known, the removal is recorded as its cgroup_removed event."""
        if process_id is None:
            process_id = self._pending_release.get(job_id)
        self._pending_release[job_id] = process_id
        try:
            removed = self.governor.release(job_id)
        except OSError as exc:
            log.warning("cgroup of %s not removed: %s", job_id, exc)
            return
        if not removed:
            return
        if process_id is not None and not self.outbox:
            try:
                self._record_cgroup_removed(process_id, job_id, now)
            except Exception as exc:  # a store failure must not stop the other releases
                log.warning("removal of cgroup %s not recorded yet: %s", job_id, exc)
                return
        del self._pending_release[job_id]

    def retry_releases(self, now: Moment) -> None:
        for job_id, process_id in list(self._pending_release.items()):
            self.release(job_id, now, process_id)

    def _record_cgroup_removed(self, process_id: int, job_id: str, now: Moment) -> None:
        cgroups = [str(directory) for directory in self.governor.job_directories(job_id)]
        self.store.record_cgroup_removed(
            process_id, job_id=job_id, cgroups=cgroups, now=utc(now.wall)
        )
