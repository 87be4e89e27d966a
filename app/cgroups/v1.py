"""cgroup v1: one hierarchy per controller (or per group of controllers), each mounted apart.

The CPU limits go to the cpu hierarchy, the memory limit to the memory hierarchy, and the pid
into the job cgroup of each, plus cpuacct's when that is a hierarchy of its own (for the CPU
time). The daemon's own cgroup differs per hierarchy (/proc/self/cgroup), and so does the
parent: `<own cgroup in that hierarchy>/ffrtmp` by default. v1 has no "no internal processes"
rule, so the parent can sit right below the own cgroup.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ffrtmp.cgroups.errors import GovernorError, wrapped_error
from ffrtmp.cgroups.governor import Governor, Usage
from ffrtmp.cgroups.hierarchies import Hierarchy, Mount, read_mounts, resolve_parent
from ffrtmp.limits import (
    CPU_PERIOD_US,
    MAX_CPU_WEIGHT,
    MIN_CPU_WEIGHT,
    Limits,
    cpu_shares_for_weight,
)

log = logging.getLogger(__name__)

NEEDED_CONTROLLERS = ("cpu", "memory")
USED_CONTROLLERS = ("cpu", "cpuacct", "memory")
# The kernel shows "no memory limit" as its page counter maximum (9223372036854771712 with 4 KiB
# pages); anything this large is no limit.
UNLIMITED_MEMORY_BYTES = 1 << 62
MOVE_CHARGE_FILE = "memory.move_charge_at_immigrate"
MOVE_ANONYMOUS_CHARGE = "1"  # bit 0: anonymous pages and swap; bit 1 (file pages) not set


def v1_mounts(root: Path, proc_root: Path) -> dict[str, Mount]:
    """The v1 hierarchies mounted right below `root`, by controller. Without a mountinfo entry
    (a tree that is not mounted), directories named for a controller stand in."""
    found: dict[str, Mount] = {}
    for mount in read_mounts(proc_root):
        if mount.fs_type == "cgroup" and mount.mount_point.parent == root:
            for controller in mount.super_options:
                if controller in USED_CONTROLLERS:
                    found.setdefault(controller, mount)
    if not found:
        for controller in USED_CONTROLLERS:
            directory = root / controller
            if (directory / "cgroup.procs").is_file():
                found[controller] = Mount(directory, "/", "cgroup", (controller,))
    return found


def has_v1_hierarchies(root: Path, proc_root: Path) -> bool:
    return set(NEEDED_CONTROLLERS) <= v1_mounts(root, proc_root).keys()


class CgroupV1Governor(Governor):
    version = 1
    _by_controller: dict[str, Hierarchy]

    def _find_hierarchies(self, parent: str | None) -> tuple[Hierarchy, ...]:
        mounts = v1_mounts(self.root, self.proc_root)
        missing = [name for name in NEEDED_CONTROLLERS if name not in mounts]
        if missing:
            raise GovernorError(
                errno.ENOENT,
                f"no cgroup v1 {' or '.join(missing)} hierarchy is mounted below {self.root}",
                self.root,
            )
        own = self._own_cgroups()
        hierarchies: list[Hierarchy] = []
        self._by_controller = {}
        for controller in USED_CONTROLLERS:
            mount = mounts.get(controller)
            if mount is None:
                continue
            shared = next((h for h in hierarchies if h.mount == mount.mount_point), None)
            if shared is not None:  # e.g. cpu,cpuacct mounted together
                self._by_controller[controller] = shared
                continue
            own_path = own.get(controller)
            if own_path is None:
                raise GovernorError(
                    errno.ENOENT,
                    f"{self.own_cgroup_file} names no cgroup in the {controller} hierarchy",
                )
            probe = Hierarchy(
                controller, controller, mount.mount_point, mount.mount_root, mount.mount_point
            )
            parent_path = resolve_parent(parent, own_path)
            parent_dir = probe.directory_within(str(parent_path), "the parent cgroup")
            hierarchy = replace(probe, parent=parent_dir)
            hierarchies.append(hierarchy)
            self._by_controller[controller] = hierarchy
        return tuple(hierarchies)

    def _prepare_parent(self) -> None:
        for hierarchy in self.hierarchies:
            self._refuse_read_only(hierarchy.mount)
            self._make_directories(hierarchy.mount, hierarchy.parent)

    def _parent_weight_file(self) -> tuple[Path, Callable[[int], str]]:
        return self._by_controller["cpu"].parent / "cpu.shares", _shares_text

    def _job(self, controller: str, job_id: str) -> Path | None:
        hierarchy = self._by_controller.get(controller)
        return None if hierarchy is None else hierarchy.parent / job_id

    def _limit_writes(self, job_id: str, limits: Limits) -> list[tuple[Path, str]]:
        cpu, memory = self._job("cpu", job_id), self._job("memory", job_id)
        quota, memory_bytes = limits.cpu_quota_us, limits.memory_limit_bytes
        return [
            (cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US)),  # before the quota it scales
            (cpu / "cpu.cfs_quota_us", "-1" if quota is None else str(quota)),
            (cpu / "cpu.shares", str(limits.cpu_shares_v1)),
            (memory / "memory.limit_in_bytes", "-1" if memory_bytes is None else str(memory_bytes)),
        ]

    def _move_charge_on_entry(self, job_id: str) -> bool:
        """memory.move_charge_at_immigrate 1: the anonymous memory (and swap) a process was
        charged elsewhere moves with it into the job cgroup, so its limit and peak count what
        it allocated before the attach. Not file pages (bit 1, value 2): those are shared page
        cache, charged to whoever read the file first. Newer kernels removed charge moving and
        refuse the write (EINVAL, seen on 6.18); then the charge stays behind, and the attach
        goes on."""
        path = self._job("memory", job_id) / MOVE_CHARGE_FILE
        try:
            self.files.write(path, MOVE_ANONYMOUS_CHARGE)
        except OSError as err:
            if err.errno not in (errno.EINVAL, errno.ENOENT, errno.EOPNOTSUPP):
                raise wrapped_error(err, f"write {MOVE_ANONYMOUS_CHARGE!r} to", path) from err
            log.debug("%s: the kernel does not move charges (%s)", path, err)
            return False
        return self._charge_moved_on_entry(job_id) is True

    def _charge_moved_on_entry(self, job_id: str) -> bool | None:
        text = self._read_optional(self._job("memory", job_id) / MOVE_CHARGE_FILE)
        return None if text is None else text.strip() == MOVE_ANONYMOUS_CHARGE

    def _reads_back_as(self, path: Path, written: str, read: str) -> bool:
        if path.name == "memory.limit_in_bytes" and written == "-1":
            return int(read) >= UNLIMITED_MEMORY_BYTES
        return read == written

    def _applied_limits(self, job_id: str) -> Limits:
        cpu, memory = self._job("cpu", job_id), self._job("memory", job_id)
        quota = int(self._read(cpu / "cpu.cfs_quota_us"))
        shares = int(self._read(cpu / "cpu.shares"))
        memory_bytes = int(self._read(memory / "memory.limit_in_bytes"))
        return Limits.from_cgroup_units(
            cpu_quota_us=None if quota < 0 else quota,
            # The inverse of Limits.cpu_shares_v1; exact for every weight it maps.
            cpu_weight=max(MIN_CPU_WEIGHT, min(MAX_CPU_WEIGHT, round(shares * 100 / 1024))),
            memory_limit_bytes=None if memory_bytes >= UNLIMITED_MEMORY_BYTES else memory_bytes,
        )

    def _read_usage(self, job_id: str) -> Usage:
        memory, cpuacct = self._job("memory", job_id), self._job("cpuacct", job_id)
        nanoseconds = None if cpuacct is None else self._counter(cpuacct / "cpuacct.usage")
        return Usage.from_counters(
            peak_memory_bytes=self._counter(memory / "memory.max_usage_in_bytes"),
            cpu_seconds=None if nanoseconds is None else nanoseconds / 1e9,
            oom_kills=self._counter(memory / "memory.oom_control", "oom_kill"),
        )


def _shares_text(weight: int) -> str:
    return str(cpu_shares_for_weight(weight))
