"""cgroup v2: one unified hierarchy, controllers enabled top-down in cgroup.subtree_control.

Where job cgroups go. cgroup v2 does not let a cgroup that holds processes enable controllers
for its children ("no internal processes"), and the daemon's own cgroup holds the daemon.
So the governor picks an *anchor*, the highest cgroup it may change, and puts the parent
`ffrtmp` right below it:

- the daemon is in the root cgroup (exempt from the rule): the anchor is the root;
- the daemon is in a subgroup of a cgroup systemd delegated to it (`Delegate=yes`, which marks
  the delegated cgroup with the `trusted.delegate` xattr, with `DelegateSubgroup=` of systemd
  254 and newer): the anchor is the delegated cgroup, so `ffrtmp` is a sibling of the daemon's
  subgroup;
- the daemon is in the delegated cgroup itself (`Delegate=yes` on systemd before 254, which
  starts the main process there): before it enables controllers there, the daemon moves itself,
  every thread, into the leaf `daemon` below it, as systemd's delegation documentation asks of
  a delegated service, and the anchor is the delegated cgroup as above;
- otherwise (a shell, a container) the anchor is the daemon's own cgroup. Enabling controllers
  there fails with EBUSY while the daemon runs in it, and check() says so and what to do.

`ffrtmp` only ever holds job cgroups, never a process, so its own subtree_control can always be
written. Nothing above the anchor is ever written: missing controllers there are reported.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path

from ffrtmp.cgroups.errors import GovernorError, wrapped_error
from ffrtmp.cgroups.governor import Governor, Usage
from ffrtmp.cgroups.hierarchies import (
    V2_HIERARCHY_KEY,
    Hierarchy,
    mount_root_of,
    read_proc_cgroups,
    resolve_parent,
)
from ffrtmp.limits import CPU_PERIOD_US, Limits

NEEDED_CONTROLLERS = frozenset({"cpu", "memory"})
DELEGATION_XATTRS = ("trusted.delegate", "user.delegate")
# The leaf the daemon moves itself into when systemd started it in its delegated cgroup: the
# name DelegateSubgroup=daemon gives it (systemd >= 254, docs/install.md): one layout for both.
SELF_LEAF = "daemon"

log = logging.getLogger(__name__)


def is_delegated(directory: Path) -> bool:
    """True when systemd marked this cgroup as delegated to the service running in it."""
    for name in DELEGATION_XATTRS:
        try:
            if os.getxattr(directory, name).strip() in (b"1", b"yes", b"true"):
                return True
        except OSError:
            continue
    return False


class CgroupV2Governor(Governor):
    version = 2
    anchor: Path
    # Set when this process sits in a delegated cgroup it must leave before enabling
    # controllers there: the leaf it moves itself into.
    self_leaf: Path | None = None

    def _find_hierarchies(self, parent: str | None) -> tuple[Hierarchy, ...]:
        if not (self.root / "cgroup.controllers").is_file():
            raise GovernorError(
                errno.ENOENT,
                f"{self.root} is neither a cgroup v2 mount (it has no cgroup.controllers) "
                "nor a directory of cgroup v1 cpu and memory hierarchies",
                self.root,
            )
        own = self._own_cgroups().get(V2_HIERARCHY_KEY)
        if own is None:
            raise GovernorError(
                errno.ENOENT, f"{self.own_cgroup_file} names no cgroup v2 (0::) cgroup"
            )
        mount_root = mount_root_of(self.proc_root, self.root)
        probe = Hierarchy("unified", V2_HIERARCHY_KEY, self.root, mount_root, self.root)
        self.anchor = self._choose_anchor(probe.directory_within(own, "the daemon's cgroup"))
        parent_path = resolve_parent(parent, probe.cgroup_path(self.anchor))
        parent_dir = probe.directory_within(str(parent_path), "the parent cgroup")
        if not parent_dir.is_relative_to(self.anchor):
            # A parent the operator placed elsewhere is theirs to prepare above; ffrtmp may
            # create it and enable its controllers, nothing higher.
            self.anchor = parent_dir
        return (Hierarchy("unified", V2_HIERARCHY_KEY, self.root, mount_root, parent_dir),)

    def _choose_anchor(self, own_dir: Path) -> Path:
        if own_dir == self.root:
            return own_dir
        above = own_dir.parent
        if above != self.root and is_delegated(above) and not is_delegated(own_dir):
            return above
        if is_delegated(own_dir):
            self.self_leaf = own_dir / SELF_LEAF
        return own_dir

    def _prepare_parent(self) -> None:
        self._refuse_read_only(self.root)
        if self.self_leaf is not None:
            self._leave_delegated_cgroup(self.self_leaf)
        parent = self.hierarchies[0].parent
        # Bottom-up: the cgroups whose subtree_control lacks a needed controller.
        lacking: list[Path] = []
        cgroup = parent
        while True:
            missing = NEEDED_CONTROLLERS - self._enabled(cgroup)
            if not missing:
                break
            if not cgroup.is_relative_to(self.anchor):
                raise GovernorError(
                    errno.EPERM,
                    f"controllers {_names(missing)} are not enabled in {cgroup}/"
                    f"cgroup.subtree_control, above {self.anchor}, the highest cgroup ffrtmp "
                    f"changes; enable them there or choose a parent below {self.anchor}",
                    cgroup,
                )
            lacking.append(cgroup)
            if cgroup == self.root:
                break
            cgroup = cgroup.parent
        if not lacking:
            return
        top = lacking[-1]
        if top.is_dir():
            available = self._controller_set(top / "cgroup.controllers")
            if NEEDED_CONTROLLERS - available:
                raise GovernorError(
                    errno.EOPNOTSUPP,
                    f"cgroup v2 controllers {_names(NEEDED_CONTROLLERS - available)} are not "
                    f"available in {top} (its cgroup.controllers lists "
                    f"{_names(available) or 'none'})",
                    top,
                )
        for cgroup in reversed(lacking):
            if not cgroup.is_dir():
                self._make_directory(cgroup)
            missing = NEEDED_CONTROLLERS - self._enabled(cgroup)
            if missing:
                self._enable(cgroup, missing)

    def _leave_delegated_cgroup(self, leaf: Path) -> None:
        """Move this process into `leaf` unless it is there already. On cgroup v2 a pid written
        to cgroup.procs takes every thread of its process along; each one is checked."""
        hierarchy = self.hierarchies[0]
        here = self._own_cgroups().get(V2_HIERARCHY_KEY)
        if here != hierarchy.cgroup_path(leaf.parent):
            return  # moved already (an earlier check), or by someone else: left where it is
        self._make_directory(leaf)
        procs = leaf / "cgroup.procs"
        try:
            self.files.write(procs, str(os.getpid()))
        except OSError as err:
            raise wrapped_error(err, "move the daemon itself into", procs) from err
        expected = hierarchy.cgroup_path(leaf)
        tasks = self.proc_root / "self" / "task"
        own_files = [self.own_cgroup_file]
        if tasks.is_dir():
            own_files += [tasks / tid / "cgroup" for tid in sorted(os.listdir(tasks))]
        for path in own_files:
            try:
                actual = read_proc_cgroups(path).get(V2_HIERARCHY_KEY)
            except FileNotFoundError:
                continue  # a thread that ended meanwhile
            except OSError as err:
                raise wrapped_error(err, "read", path) from err
            if actual != expected:
                raise GovernorError(
                    errno.EIO,
                    f"the daemon wrote its pid to {procs}, but {path} names {actual}",
                    procs,
                )
        log.info(
            "moved itself from its delegated cgroup %s into %s, so that job cgroups can be "
            "limited beside it",
            leaf.parent,
            leaf,
        )

    def _enabled(self, cgroup: Path) -> frozenset[str]:
        if not cgroup.is_dir():
            return frozenset()
        return self._controller_set(cgroup / "cgroup.subtree_control")

    def _controller_set(self, path: Path) -> frozenset[str]:
        return frozenset(self._read(path).split())

    def _enable(self, cgroup: Path, controllers: frozenset[str]) -> None:
        path = cgroup / "cgroup.subtree_control"
        text = " ".join(f"+{name}" for name in sorted(controllers))
        try:
            self.files.write(path, text)
        except OSError as err:
            if err.errno != errno.EBUSY:
                raise wrapped_error(err, f"write {text!r} to", path) from err
            raise GovernorError(
                errno.EBUSY,
                f"could not enable {_names(controllers)} in {path}: {cgroup} holds processes, "
                "and cgroup v2 lets only a cgroup without processes enable controllers for its "
                "children; run the daemon in a cgroup systemd delegated to it (Delegate=yes: it "
                "then moves itself into a leaf) or give a parent cgroup that holds none",
                path,
            ) from err

    def _parent_weight_file(self) -> tuple[Path, Callable[[int], str]]:
        return self.hierarchies[0].parent / "cpu.weight", str

    def _job(self, job_id: str) -> Path:
        (job,) = self.job_directories(job_id)  # v2 has one hierarchy
        return job

    def _limit_writes(self, job_id: str, limits: Limits) -> list[tuple[Path, str]]:
        job = self._job(job_id)
        quota = limits.cpu_quota_us
        memory = limits.memory_limit_bytes
        return [
            (job / "cpu.max", f"{'max' if quota is None else quota} {CPU_PERIOD_US}"),
            (job / "cpu.weight", str(limits.cpu_weight)),
            (job / "memory.max", "max" if memory is None else str(memory)),
        ]

    def _applied_limits(self, job_id: str) -> Limits:
        job = self._job(job_id)
        quota, _period = self._read(job / "cpu.max").split()
        memory = self._read(job / "memory.max").strip()
        return Limits.from_cgroup_units(
            cpu_quota_us=None if quota == "max" else int(quota),
            cpu_weight=int(self._read(job / "cpu.weight")),
            memory_limit_bytes=None if memory == "max" else int(memory),
        )

    def _read_usage(self, job_id: str) -> Usage:
        job = self._job(job_id)
        microseconds = self._counter(job / "cpu.stat", "usage_usec")
        return Usage.from_counters(
            peak_memory_bytes=self._counter(job / "memory.peak"),
            cpu_seconds=None if microseconds is None else microseconds / 1_000_000,
            oom_kills=self._counter(job / "memory.events", "oom_kill"),
        )


def _names(controllers: frozenset[str]) -> str:
    return ", ".join(sorted(controllers))
