"""The real cgroup hierarchy this test process can govern processes in, whichever it is here:
cgroup v1 with writable cpu and memory hierarchies (the test machines), or cgroup v2 with the
cpu and memory controllers (the VM of `make test-v2`, see .ci/v2vm.py). A test that takes the
`cgroup_hierarchy` fixture runs on whichever this machine has, and skips, saying why, where
neither can be used.

Where a test's cgroups go (only there, and removed afterwards):
- v1: below the test process's own cgroup, in each hierarchy the governor uses. v1 lets a
  cgroup that holds processes have limited children.
- v2: a cgroup that holds processes cannot enable controllers for its children, so a test
  process's own cgroup can never be the parent of limited cgroups. v2 is used only when the
  test process runs in a leaf of a cgroup delegated to it (the `trusted.delegate` xattr, as
  systemd marks a unit with Delegate=yes): the tests' cgroups are siblings of that leaf, below
  the delegated cgroup, which is where the governor's relative parents land too. The VM
  runner builds this layout; on a v2 machine without it the tests skip rather than write to
  cgroups they were not given.

This module knows the kernel's interfaces, not the governor's internals.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import parts
import pytest

CGROUP_ROOT = Path("/sys/fs/cgroup")
NEEDED = ("cpu", "memory")
V1_USED = ("cpu", "cpuacct", "memory")  # cpuacct: the governor reads CPU time there on v1
DELEGATION_XATTRS = ("trusted.delegate", "user.delegate")


@dataclass(frozen=True)
class Base:
    """Where a relative parent name lands in one hierarchy, as a directory and as
    /proc/<pid>/cgroup names that cgroup."""

    key: str  # the hierarchy as /proc/<pid>/cgroup names it: a v1 controller, "" for v2
    directory: Path
    cgroup_path: str


@dataclass(frozen=True)
class CgroupHierarchy:
    """What `create_governor(root=root, parent=<a relative name>, version=version)` governs
    with here."""

    version: int
    root: Path  # create_governor's root: the v2 mount, or the directory of the v1 mounts
    by_controller: dict[str, Base]  # v1: cpu, cpuacct, memory; v2: the one base under each

    @property
    def bases(self) -> tuple[Path, ...]:
        """Where a relative parent name lands, one per hierarchy used."""
        return tuple(dict.fromkeys(base.directory for base in self.by_controller.values()))

    def directories(self, parent_name: str) -> list[Path]:
        return [base / parent_name for base in self.bases]

    def describe(self) -> str:
        return f"cgroup v{self.version}, test cgroups below {', '.join(map(str, self.bases))}"


@dataclass(frozen=True)
class _Mount:
    point: Path
    root: str  # which cgroup of the hierarchy is mounted there
    fs_type: str
    options: tuple[str, ...]

    def directory(self, cgroup_path: str) -> Path:
        relative = PurePosixPath(cgroup_path).relative_to(self.root)
        return self.point.joinpath(*relative.parts)


def _mounts() -> list[_Mount]:
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
                options = tuple(tail[2].split(","))
                mounts.append(_Mount(Path(fields[4]), fields[3], tail[0], options))
    return mounts


def _is_delegated(directory: Path) -> bool:
    for name in DELEGATION_XATTRS:
        try:
            if os.getxattr(directory, name).strip() in (b"1", b"yes", b"true"):
                return True
        except OSError:
            continue
    return False


def _v2(mount: _Mount, own: dict[str, str]) -> CgroupHierarchy | str:
    if "" not in own:
        return "this process is in no cgroup v2 cgroup"
    try:
        own_dir = mount.directory(own[""])
    except ValueError:
        return f"this process's cgroup {own['']} is outside the v2 mount at {mount.point}"
    delegated = own_dir.parent
    if own_dir == mount.point or not _is_delegated(delegated):
        return (
            f"cgroup v2: this process's cgroup {own_dir} is not a leaf of a delegated cgroup, "
            "so it has nowhere to create limited cgroups (run `make test-v2`)"
        )
    available = set((delegated / "cgroup.controllers").read_text().split())
    if missing := set(NEEDED) - available:
        return f"cgroup v2: {', '.join(sorted(missing))} not available in {delegated}"
    if not os.access(delegated, os.W_OK):
        return f"cgroup v2: {delegated} is not writable"
    base = Base("", delegated, str(PurePosixPath(own[""]).parent))
    return CgroupHierarchy(2, mount.point, dict.fromkeys(V1_USED, base))


def _v1(mounts: list[_Mount], own: dict[str, str]) -> CgroupHierarchy | str:
    by_controller = {}
    for mount in mounts:
        if mount.fs_type == "cgroup" and mount.point.parent == CGROUP_ROOT:
            for controller in V1_USED:
                if controller in mount.options:
                    by_controller.setdefault(controller, mount)
    if missing := [c for c in NEEDED if c not in by_controller]:
        return f"no cgroup v1 {' or '.join(missing)} hierarchy below {CGROUP_ROOT}"
    bases: dict[str, Base] = {}
    for controller, mount in by_controller.items():
        try:
            directory = mount.directory(own[controller])
        except (KeyError, ValueError):
            return f"this process has no cgroup in the v1 {controller} hierarchy"
        bases[controller] = Base(controller, directory, own[controller])
    writable = all(os.access(base.directory, os.W_OK) for base in bases.values())
    if os.geteuid() != 0 or not writable:
        return "cgroup v1: needs root and writable cpu and memory hierarchies"
    return CgroupHierarchy(1, CGROUP_ROOT, bases)


def detect() -> CgroupHierarchy | str:
    """This process's usable hierarchy, or one sentence saying why there is none. As
    create_governor decides: v2 when the root is a cgroup2 mount, else v1."""
    try:
        mounts, own = _mounts(), read_memberships("self")
    except OSError as err:
        return f"cannot read this process's cgroups: {err}"
    for mount in mounts:
        if mount.fs_type == "cgroup2" and mount.point == CGROUP_ROOT:
            return _v2(mount, own)
    return _v1(mounts, own)


def pytest_report_header() -> str:
    found = detect()
    return "cgroups: " + (found.describe() if isinstance(found, CgroupHierarchy) else found)


@pytest.fixture(scope="session")
def cgroup_hierarchy() -> CgroupHierarchy:
    """The real hierarchy here; the test skips, saying why, when there is none to use."""
    found = detect()
    if isinstance(found, str):
        parts.skip(parts.CGROUPS, found)
    return found


def remove_tree(directory: Path) -> None:
    """Remove a cgroup directory and the cgroups below it, deepest first; a cgroup that still
    holds a process stays (rmdir fails with EBUSY) rather than be emptied by force."""
    if not directory.is_dir():
        return
    for child in directory.iterdir():
        if child.is_dir():
            remove_tree(child)
    try:
        directory.rmdir()
    except OSError:
        pass


@pytest.fixture
def real_cgroup_parent(cgroup_hierarchy: CgroupHierarchy, spawn) -> Iterator[str]:
    """A unique relative parent name for `create_governor(parent=...)` in the real hierarchy,
    removed afterwards with all below it, after the test's processes are ended (a populated
    cgroup cannot be removed)."""
    name = f"ffrtmp-test-{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        spawn.close()
        for directory in cgroup_hierarchy.directories(name):
            remove_tree(directory)


MIB = 1024 * 1024
V1_UNLIMITED_BYTES = 1 << 62  # v1 shows "no memory limit" as its page counter's maximum
V1_SHARES_PER_WEIGHT = 1024 / 100  # cpu.shares 1024 and cpu.weight 100 are both the default


@dataclass(frozen=True)
class JobCgroups:
    """The job cgroups below a test's parent cgroup, as the kernel's own files show them, in
    whichever hierarchy this is: a test asks for a limit, a counter or a membership and gets
    the same answer from the v1 file or the v2 one."""

    hierarchy: CgroupHierarchy
    parent: str  # the relative parent name given to the daemon (--cgroup-parent)

    @property
    def version(self) -> int:
        return self.hierarchy.version

    def parent_directory(self, controller: str = "cpu") -> Path:
        return self.hierarchy.by_controller[controller].directory / self.parent

    def directory(self, job_id: str, controller: str = "cpu") -> Path:
        return self.parent_directory(controller) / job_id

    def directories(self, job_id: str) -> list[Path]:
        """The job's directory in every hierarchy used (v1: cpu, cpuacct, memory; v2: one)."""
        return [directory / job_id for directory in self.hierarchy.directories(self.parent)]

    def names(self) -> list[str]:
        """The job cgroups below the parent, in any hierarchy."""
        found = set()
        for parent in self.hierarchy.directories(self.parent):
            if parent.is_dir():
                found.update(entry.name for entry in parent.iterdir() if entry.is_dir())
        return sorted(found)

    def job_of(self, pid: int) -> str | None:
        """The job cgroup below the parent that `pid` is in, None if it is in none. On v1 its
        cpu and memory cgroups must agree: a process half moved is an error."""
        memberships = read_memberships(pid)
        jobs = set()
        for controller in NEEDED:
            base = self.hierarchy.by_controller[controller]
            path = PurePosixPath(memberships[base.key])
            parent = PurePosixPath(base.cgroup_path) / self.parent
            jobs.add(path.name if path.parent == parent else None)
        assert len(jobs) == 1, f"pid {pid} is in {memberships}: cpu and memory disagree"
        return jobs.pop()

    def pids(self, job_id: str) -> set[int]:
        return {
            int(pid)
            for directory in self.directories(job_id)
            if directory.is_dir()
            for pid in (directory / "cgroup.procs").read_text().split()
        }

    def parent_pids(self) -> set[int]:
        """The processes in the parent cgroup itself (v2 forbids any where children are
        limited; ffrtmp never puts one there on v1 either)."""
        return {
            int(pid)
            for directory in self.hierarchy.directories(self.parent)
            for pid in (directory / "cgroup.procs").read_text().split()
        }

    def subtree_control(self) -> set[str]:
        """v2: the controllers the parent enables for its job cgroups."""
        assert self.version == 2, "cgroup.subtree_control is a cgroup v2 file"
        return set((self.parent_directory() / "cgroup.subtree_control").read_text().split())

    def cpu_quota(self, job_id: str) -> float | None:
        """The CPU quota in percent of one CPU, None for no quota."""
        directory = self.directory(job_id, "cpu")
        if self.version == 1:
            quota = int(_read(directory / "cpu.cfs_quota_us"))
            period = int(_read(directory / "cpu.cfs_period_us"))
        else:
            text_quota, text_period = _read(directory / "cpu.max").split()
            quota, period = (-1 if text_quota == "max" else int(text_quota)), int(text_period)
        return None if quota < 0 else quota * 100 / period

    def cpu_weight(self, job_id: str) -> float:
        """The CPU weight on v2's scale (1 to 10000, default 100); v1's cpu.shares scaled."""
        directory = self.directory(job_id, "cpu")
        if self.version == 1:
            return int(_read(directory / "cpu.shares")) / V1_SHARES_PER_WEIGHT
        return int(_read(directory / "cpu.weight"))

    def memory_limit_mb(self, job_id: str) -> float | None:
        """The memory limit in MiB, None for no limit."""
        directory = self.directory(job_id, "memory")
        if self.version == 1:
            limit = int(_read(directory / "memory.limit_in_bytes"))
            return None if limit >= V1_UNLIMITED_BYTES else limit / MIB
        text = _read(directory / "memory.max")
        return None if text == "max" else int(text) / MIB

    def limits(self, job_id: str) -> tuple[float | None, float, float | None]:
        """(cpu quota %, cpu weight, memory limit MiB), as the processes table records them."""
        return self.cpu_quota(job_id), self.cpu_weight(job_id), self.memory_limit_mb(job_id)

    def oom_kills(self, job_id: str) -> int:
        """How many processes the kernel's OOM killer ended in the job cgroup."""
        directory = self.directory(job_id, "memory")
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        return _keyed(directory / name)["oom_kill"]

    def counts_peak_memory(self) -> bool:
        """Whether this kernel keeps a cgroup's peak memory: v1's memory.max_usage_in_bytes
        always, v2's memory.peak from Linux 5.19 on (Debian 12's 6.1 has it)."""
        return self.version == 1 or kernel_version() >= V2_PEAK_SINCE


V2_PEAK_SINCE = (5, 19)


def kernel_version() -> tuple[int, int]:
    major, minor = os.uname().release.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def read_memberships(pid: int | str) -> dict[str, str]:
    """/proc/<pid>/cgroup as {controller: cgroup path}; the v2 line is under ""."""
    memberships = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                memberships[controller] = path
    return memberships


def _read(path: Path) -> str:
    return path.read_text().strip()


def _keyed(path: Path) -> dict[str, int]:
    pairs = (line.split() for line in path.read_text().splitlines())
    return {key: int(value) for key, value in pairs}


@pytest.fixture
def job_cgroups(cgroup_hierarchy: CgroupHierarchy, real_cgroup_parent: str) -> JobCgroups:
    """The test's parent (`real_cgroup_parent`) and what the kernel shows of the job cgroups
    a daemon makes below it."""
    return JobCgroups(cgroup_hierarchy, real_cgroup_parent)
