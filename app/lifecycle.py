"""Following governed processes to their end: exit code or signal, usage, cgroup removal.

Exit statuses come, best first, from the kernel's exit event, from the zombie's
/proc/<pid>/stat, or not at all: then the exit is stored with NULL and the reason.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from app.exit_status import ExitInfo, zombie_exit_status
from app.identity import ProcessIdentity
from app.states import ProcessState
from app.store import Store
from app.utctime import utc

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
    process_id: int
    identity: ProcessIdentity
    job_id: str
    governed: bool  # it has cgroups of ours to read and remove


class Lifecycle:
    def __init__(self, store: Store, governor) -> None:
        self.store = store
        self.governor = governor
        self.by_pid: dict[int, Followed] = {}
        self._recent_exits: OrderedDict[int, int] = OrderedDict()  # pid -> wait status
        self._pending_release: set[str] = set()

    def follow(self, followed: Followed) -> None:
        self.by_pid[followed.identity.pid] = followed

    def is_followed(self, identity: ProcessIdentity) -> bool:
        f = self.by_pid.get(identity.pid)
        return f is not None and f.identity == identity

    def followed_ids(self) -> list[int]:
        return [f.process_id for f in self.by_pid.values()]

    def note_exit_status(self, pid: int, wait_status: int) -> None:
        """Keep an exit status from the kernel for a pid we may ask about soon (a process
        that exits while its attach is still being decided)."""
        self._recent_exits[pid] = wait_status
        self._recent_exits.move_to_end(pid)
        while len(self._recent_exits) > RECENT_EXITS_KEPT:
            self._recent_exits.popitem(last=False)

    def on_exit_event(self, pid: int, wait_status: int, now: float) -> bool:
        followed = self.by_pid.get(pid)
        if followed is None:
            self.note_exit_status(pid, wait_status)
            return False
        self.finish(followed, ExitInfo.from_wait_status(wait_status), now)
        return True

    def exit_info_for(self, identity: ProcessIdentity, reason: str) -> ExitInfo:
        status = self._recent_exits.pop(identity.pid, None)
        if status is not None:
            return ExitInfo.from_wait_status(status)
        from_zombie = zombie_exit_status(identity.pid, identity.start_ticks)
        if from_zombie is not None:
            return ExitInfo(*from_zombie)
        return ExitInfo.unknown(reason)

    def poll(self, now: float, drain_events: Callable[[], object] | None = None) -> int:
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
        self.retry_releases()
        return len(gone)

    def finish(self, followed: Followed, info: ExitInfo, now: float,
               state: ProcessState = ProcessState.EXITED) -> None:  # fmt: skip
        usage = None
        if followed.governed:
            try:
                usage = self.governor.usage(followed.job_id)
            except OSError as exc:
                log.warning("usage of %s unreadable: %s", followed.job_id, exc)
        self.store.record_exit(
            followed.process_id, now=utc(now), exit_code=info.exit_code,
            exit_signal=info.exit_signal, reason=info.reason,
            peak_memory_bytes=getattr(usage, "peak_memory_bytes", None),
            cpu_seconds=getattr(usage, "cpu_seconds", None),
            oom_killed=getattr(usage, "oom_killed", None), state=state,
        )  # fmt: skip
        self.by_pid.pop(followed.identity.pid, None)
        log.info("%s (%s) ended: code %s signal %s%s", followed.identity, followed.job_id,
                 info.exit_code, info.exit_signal,
                 f" ({info.reason})" if info.reason else "")  # fmt: skip
        if followed.governed:
            self.release(followed.job_id)

    def release(self, job_id: str) -> None:
        try:
            removed = self.governor.release(job_id)
        except OSError as exc:
            log.warning("cgroup of %s not removed: %s", job_id, exc)
            removed = False
        if removed:
            self._pending_release.discard(job_id)
        else:
            self._pending_release.add(job_id)

    def retry_releases(self) -> None:
        for job_id in list(self._pending_release):
            self.release(job_id)
