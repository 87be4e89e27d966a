"""A process's own memory as the kernel counts it for the process, not for its cgroup.

VmHWM in /proc/<pid>/status is the highest resident set size the process has had over its
whole life, whichever cgroup it was in: beside a job cgroup's peak (which counts only what was
charged to that cgroup, from the attach on, and also its children) it shows what the process
really held. It is there only while the process runs: an exited one (a zombie) has none.
"""

from __future__ import annotations

from pathlib import Path

from ffrtmp.identity import ProcessIdentity

_KEY = b"VmHWM:"


def peak_resident_bytes(identity: ProcessIdentity) -> int | None:
    """The process's high-water resident size in bytes; None when it has ended, is a zombie or
    a kernel thread (no VmHWM), or its pid now names another process."""
    try:
        status = Path(f"/proc/{identity.pid}/status").read_bytes()
    except OSError:
        return None
    found = None
    for line in status.splitlines():
        if line.startswith(_KEY):
            fields = line[len(_KEY) :].split()  # "  123456 kB"
            if fields and fields[0].isdigit():
                found = int(fields[0]) * 1024
            break
    # Read, then checked: a pid cannot be reused while its process runs, so if it is still
    # the same process now, it was the same one when its status was read.
    if found is None or not identity.is_running():
        return None
    return found


CGROUP_PEAK_MEANING = (
    "the job cgroup's peak (memory.peak on v2, memory.max_usage_in_bytes on v1): memory "
    "charged to the job cgroup, its children's included, from the attach on"
)
PROCESS_PEAK_MEANING = (
    "the process's own high-water resident size over its whole life (VmHWM of "
    "/proc/<pid>/status), as last read while it ran"
)


def charged_before_attach(cgroup_version: int | None, moved: bool | None) -> str:
    """What became of the memory a process was charged before its attach, for people."""
    if moved:
        return "moved into the job cgroup with it (memory.move_charge_at_immigrate): counted"
    if cgroup_version == 2:
        return (
            "stayed with the cgroup it came from: cgroup v2 cannot move charges, so the "
            "cgroup peak leaves it out"
        )
    if cgroup_version == 1 and moved is False:
        return (
            "stayed with the cgroup it came from: this kernel refused "
            "memory.move_charge_at_immigrate (charge moving is gone from newer kernels), "
            "so the cgroup peak leaves it out"
        )
    return "unknown (not recorded for this process)"


def memory_account(row: dict) -> dict:
    """The memory figures of a process row, each beside what it counts."""
    return {
        "cgroup_peak_bytes": row.get("peak_memory_bytes"),
        "cgroup_peak_is": CGROUP_PEAK_MEANING,
        "process_peak_rss_bytes": row.get("process_peak_rss_bytes"),
        "process_peak_rss_is": PROCESS_PEAK_MEANING,
        "charged_before_attach": charged_before_attach(
            row.get("cgroup_version"), row.get("memory_charge_moved")
        ),
    }
