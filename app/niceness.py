"""The nice value of a running process: `ffrtmp attach --nice` (`ffrtmp run --nice` sets its
child's own before exec)."""

from __future__ import annotations

import os

from ffrtmp.identity import ProcessIdentity

MIN_NICE = -20
MAX_NICE = 19


class NiceError(Exception):
    """The nice value could not be set; str() says why, in one sentence."""


def set_nice(identity: ProcessIdentity, value: int) -> int:
    """Give every thread of the process `identity` names the nice value `value`; returns how
    many threads were changed. On Linux the nice value belongs to a thread, and setpriority
    on a pid changes its main thread only, so each thread in /proc/<pid>/task is set. The
    identity is checked first, so a reused pid is never touched. Raises NiceError."""
    if not MIN_NICE <= value <= MAX_NICE:
        raise NiceError(f"nice must be between {MIN_NICE} and {MAX_NICE}, not {value}")
    if not identity.is_running():
        raise NiceError(f"{identity} is no longer running")
    try:
        threads = [int(tid) for tid in os.listdir(f"/proc/{identity.pid}/task")]
    except FileNotFoundError:
        raise NiceError(f"{identity} is no longer running") from None
    changed = 0
    for tid in threads:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, value)
        except ProcessLookupError:
            continue  # a thread that ended meanwhile
        except PermissionError:
            raise NiceError(
                f"cannot set nice {value} on {identity}: permission denied (lowering a nice "
                "value, or changing another user's process, takes root)"
            ) from None
        changed += 1
    if changed == 0:
        raise NiceError(f"{identity} is no longer running")
    return changed
