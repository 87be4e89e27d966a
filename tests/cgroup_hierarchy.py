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

import pytest

CGROUP_ROOT = Path("/sys/fs/cgroup")
NEEDED = ("cpu", "memory")
V1_USED = ("cpu", "cpuacct", "memory")  # cpuacct: the governor reads CPU time there on v1
DELEGATION_XATTRS = ("trusted.delegate", "user.delegate")


@dataclass(frozen=True)
class CgroupHierarchy:
    """What `create_governor(root=root, parent=<a relative name>, version=version)` governs
    with here."""

    version: int
    root: Path  # create_governor's root: the v2 mount, or the directory of the v1 mounts
    bases: tuple[Path, ...]  # where a relative parent name lands, one per hierarchy used

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


def _own_cgroups() -> dict[str, str]:
    """{controller: cgroup path} from /proc/self/cgroup; the v2 line is under ""."""
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                own[controller] = path
    return own


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
    return CgroupHierarchy(2, mount.point, (delegated,))


def _v1(mounts: list[_Mount], own: dict[str, str]) -> CgroupHierarchy | str:
    by_controller = {}
    for mount in mounts:
        if mount.fs_type == "cgroup" and mount.point.parent == CGROUP_ROOT:
            for controller in V1_USED:
                if controller in mount.options:
                    by_controller.setdefault(controller, mount)
    if missing := [c for c in NEEDED if c not in by_controller]:
        return f"no cgroup v1 {' or '.join(missing)} hierarchy below {CGROUP_ROOT}"
    bases: list[Path] = []
    for controller, mount in by_controller.items():
        try:
            base = mount.directory(own[controller])
        except (KeyError, ValueError):
            return f"this process has no cgroup in the v1 {controller} hierarchy"
        if base not in bases:
            bases.append(base)
    if os.geteuid() != 0 or not all(os.access(b, os.W_OK) for b in bases):
        return "cgroup v1: needs root and writable cpu and memory hierarchies"
    return CgroupHierarchy(1, CGROUP_ROOT, tuple(bases))


def detect() -> CgroupHierarchy | str:
    """This process's usable hierarchy, or one sentence saying why there is none. As
    create_governor decides: v2 when the root is a cgroup2 mount, else v1."""
    try:
        mounts, own = _mounts(), _own_cgroups()
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
        pytest.skip(found)
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
