"""The CPU weight of the parent cgroup, which all governed jobs share against its siblings.

CPU weights nest: the kernel first shares the CPU between the siblings of each level by their
weights, and a cgroup's share is then divided between its own children. A job's `cpu_weight`
only divides the parent's share between the jobs; against everything outside ffrtmp the jobs
together count as the parent. Left at the kernel's default (1024 cpu.shares on v1, cpu.weight
100 on v2) all governed jobs together would weigh as much as one ungoverned thread on v1
(each thread of a cgroup's own processes counts as a sibling of its child cgroups), or as one
sibling cgroup on v2: a governed transcode ran at well under half the speed of the same one
ungoverned. So the parent gets `cgroup.parent_cpu_weight` (v2 scale; cpu.shares derived on v1).

Ownership: the weight is written only to a parent ffrtmp created. A parent it creates is marked
with the extended attribute PARENT_MARK (kept by the kernel for the cgroup's lifetime), so a
later start recognises it; a parent made by someone else (an operator's, a systemd slice) is
never written, and a warning says so once.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from ffrtmp.cgroups.errors import GovernorError, wrapped_error

log = logging.getLogger(__name__)

PARENT_MARK = "user.ffrtmp.parent"
PARENT_MARK_VALUE = b"1"


def mark_parent(directory: Path) -> bool:
    """Mark a parent cgroup as made by ffrtmp; False when this kernel keeps no such mark."""
    try:
        os.setxattr(directory, PARENT_MARK, PARENT_MARK_VALUE)
    except OSError as err:
        log.warning(
            "could not mark the parent cgroup %s as ffrtmp's (%s): after a restart its CPU "
            "weight is left as it is",
            directory,
            os.strerror(err.errno or 0),
        )
        return False
    return True


def is_marked(directory: Path) -> bool:
    """True for a parent cgroup ffrtmp made (and marked)."""
    try:
        return os.getxattr(directory, PARENT_MARK) == PARENT_MARK_VALUE
    except OSError:
        return False


def settle_parent_weight(governor, created: set[Path]) -> None:
    """Mark the parents just `created` as ffrtmp's, and give the parent of the CPU controller
    the governor's parent_cpu_weight when it is ffrtmp's: written, then read back. Raises
    GovernorError when the kernel does not keep the value."""
    for directory in sorted(created):
        if directory.is_dir():
            mark_parent(directory)
    weight = governor.parent_cpu_weight
    if weight is None:
        return
    path, text_for = governor._parent_weight_file()
    parent = path.parent
    if parent not in created:
        if governor.keep_parent_weight:
            return  # attach and run never change what the daemon set
        if not is_marked(parent):
            log.warning(
                "the parent cgroup %s was not made by ffrtmp: its CPU weight is left as it is "
                "(%s), not set to cgroup.parent_cpu_weight %s",
                parent,
                _read_or_unknown(governor, path),
                weight,
            )
            return
    text = text_for(weight)
    try:
        governor.files.write(path, text)
    except OSError as err:
        raise wrapped_error(err, f"write {text!r} to", path) from err
    read = _read_or_unknown(governor, path)
    if read != text:
        raise GovernorError(
            errno.EIO, f"{path} reads back as {read!r} after {text!r} was written", path
        )
    log.info("parent cgroup %s: CPU weight %s (%s)", parent, weight, f"{path.name} {text}")


def _read_or_unknown(governor, path: Path) -> str:
    try:
        return governor.files.read(path).strip()
    except OSError as err:
        return f"unreadable: {os.strerror(err.errno or 0)}"
