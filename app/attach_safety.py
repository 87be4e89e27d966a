"""Which processes an operator's `ffrtmp attach --pid N` may govern: never one whose move would
hurt the machine, and (unless forced) only what the daemon itself would govern.

Always refused: pid 1 (init), kernel threads (they cannot leave the root cgroup, and trying
says nothing useful), ffrtmp itself and every one of its ancestors (governing the shell or the
service manager that runs ffrtmp would limit far more than one job), and a running daemon of
the database. Refused unless forced: a process that is not a target command, and one that sits
in another systemd service's cgroup (moving it takes it away from that service's own limits and
accounting, and systemd would not know).
"""

from __future__ import annotations

import os
from pathlib import Path

from ffrtmp import defaults

PF_KTHREAD = 0x00200000  # include/linux/sched.h: the task is a kernel thread
KTHREADD_PID = 2


class AttachRefused(Exception):
    """The one sentence saying why this pid is not governed; `forcible` when --force lifts it."""

    def __init__(self, message: str, *, forcible: bool = False) -> None:
        super().__init__(message + ("; add --force to govern it all the same" if forcible else ""))
        self.forcible = forcible


def check_never(pid: int, *, daemon_pid: int | None = None, proc: Path = Path("/proc")) -> None:
    """Raise AttachRefused for a pid no flag makes governable."""
    if pid == 1:
        raise AttachRefused("pid 1 is init: ffrtmp never moves it into a job cgroup")
    if pid == KTHREADD_PID or _is_kernel_thread(pid, proc):
        raise AttachRefused(f"pid {pid} is a kernel thread: it cannot be governed")
    if pid == os.getpid():
        raise AttachRefused(f"pid {pid} is this ffrtmp command itself")
    if pid in _ancestors(os.getpid(), proc):
        raise AttachRefused(
            f"pid {pid} is an ancestor of this ffrtmp command (its shell, session or service "
            "manager): governing it would limit ffrtmp and everything else it runs"
        )
    if daemon_pid is not None and pid == daemon_pid:
        raise AttachRefused(f"pid {pid} is the ffrtmp daemon of this database")


def check_unless_forced(
    pid: int,
    command: str,
    *,
    targets: tuple[str, ...] = defaults.TARGET_COMMANDS,
    proc: Path = Path("/proc"),
) -> None:
    """Raise a forcible AttachRefused for a pid the daemon would not govern by itself."""
    if command not in targets:
        raise AttachRefused(
            f"pid {pid} runs {command!r}, which is not a target command ({', '.join(targets)})",
            forcible=True,
        )
    theirs = service_of(_cgroup_paths(pid, proc))
    ours = service_of(_cgroup_paths(os.getpid(), proc))
    if theirs is not None and theirs != ours:
        raise AttachRefused(
            f"pid {pid} belongs to the service {theirs}: moving it takes it away from that "
            "service's own limits and accounting",
            forcible=True,
        )


def service_of(cgroup_paths: list[str]) -> str | None:
    """The systemd service (`name.service`) a process's cgroups put it in, if any. A job
    cgroup of ffrtmp's own (below ffrtmp's service) is no other service's."""
    from ffrtmp.cgroups.jobs import is_job_name

    for path in cgroup_paths:
        if is_job_name(path.rsplit("/", 1)[-1]):
            continue
        for part in reversed(path.split("/")):
            if part.endswith(".service"):
                return part
    return None


def _cgroup_paths(pid: int, proc: Path) -> list[str]:
    try:
        text = (proc / str(pid) / "cgroup").read_text()
    except OSError:
        return []
    return [line.split(":", 2)[2] for line in text.splitlines() if line.count(":") >= 2]


def _stat_fields(pid: int, proc: Path) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3 on), or None."""
    try:
        raw = (proc / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].decode("ascii", "replace").split()


def _is_kernel_thread(pid: int, proc: Path) -> bool:
    fields = _stat_fields(pid, proc)
    if not fields or len(fields) < 7:
        return False
    return int(fields[6]) & PF_KTHREAD != 0  # field 9, flags


def _ancestors(pid: int, proc: Path) -> set[int]:
    found: set[int] = set()
    while pid > 1 and pid not in found and len(found) < 4096:
        fields = _stat_fields(pid, proc)
        if not fields:
            break
        pid = int(fields[1])  # field 4, ppid
        found.add(pid)
    return found
