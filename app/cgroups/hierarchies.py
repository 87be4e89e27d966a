"""Where cgroups are: the mounted hierarchies, how /proc/<pid>/cgroup names a cgroup, and
which directory of a hierarchy that name is."""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ffrtmp import defaults
from ffrtmp.cgroups.errors import GovernorError

V2_HIERARCHY_KEY = ""  # the `0::/path` line of /proc/<pid>/cgroup names no controller


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """One mounted cgroup hierarchy the governor uses, and where its job cgroups go."""

    name: str  # for messages: "unified", "cpu", "memory", "cpuacct"
    key: str  # a controller of this hierarchy as named in /proc/<pid>/cgroup ("" for v2)
    mount: Path  # where the hierarchy is mounted
    mount_root: str  # which cgroup of the hierarchy is mounted there (mountinfo field 4)
    parent: Path  # the directory ffrtmp's job cgroups are created in

    def directory(self, cgroup_path: str) -> Path:
        """The directory of a cgroup given as /proc/<pid>/cgroup names it."""
        relative = PurePosixPath(cgroup_path).relative_to(self.mount_root)
        return self.mount.joinpath(*relative.parts)

    def directory_within(self, cgroup_path: str, what: str) -> Path:
        """directory(), or a GovernorError saying that `what` (the parent cgroup, the daemon's
        cgroup) lies outside this hierarchy's mount."""
        try:
            return self.directory(cgroup_path)
        except ValueError:
            raise GovernorError(
                errno.ENOENT, f"{what} {cgroup_path} is outside {self.description}", self.mount
            ) from None

    @property
    def description(self) -> str:
        if self.key == V2_HIERARCHY_KEY:
            return f"the cgroup v2 mount at {self.mount}"
        return f"the {self.name} hierarchy mounted at {self.mount}"

    def cgroup_path(self, directory: Path) -> str:
        """The name /proc/<pid>/cgroup shows for a cgroup directory."""
        relative = directory.relative_to(self.mount)
        return str(PurePosixPath(self.mount_root).joinpath(*relative.parts))


def read_proc_cgroups(path: Path) -> dict[str, str]:
    """Parse a /proc/<pid>/cgroup file into {controller: cgroup path}; the v2 line is under ""."""
    memberships: dict[str, str] = {}
    with open(path) as f:
        for line in f:
            _, sep, rest = line.rstrip("\n").partition(":")
            controllers, sep2, cgroup_path = rest.partition(":")
            if not (sep and sep2):
                continue
            if not controllers:
                memberships[V2_HIERARCHY_KEY] = cgroup_path
            for controller in controllers.split(","):
                if controller:
                    memberships[controller] = cgroup_path
    return memberships


def _unescape_mount_field(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


@dataclass(frozen=True, slots=True)
class Mount:
    mount_point: Path
    mount_root: str
    fs_type: str
    super_options: tuple[str, ...]


def read_mounts(proc_root: Path) -> list[Mount]:
    """The mounts of /proc/self/mountinfo; an empty list when it cannot be read."""
    mounts = []
    try:
        with open(proc_root / "self" / "mountinfo") as f:
            lines = f.readlines()
    except OSError:
        return []
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 6 or len(tail) < 3:
            continue
        mounts.append(
            Mount(
                mount_point=Path(_unescape_mount_field(fields[4])),
                mount_root=_unescape_mount_field(fields[3]),
                fs_type=tail[0],
                super_options=tuple(tail[2].split(",")),
            )
        )
    return mounts


def mount_root_of(proc_root: Path, mount_point: Path) -> str:
    for mount in read_mounts(proc_root):
        if mount.mount_point == mount_point:
            return mount.mount_root
    return "/"


def resolve_parent(parent: str | None, anchor_path: str) -> PurePosixPath:
    """The parent cgroup as /proc names it: default `<anchor>/ffrtmp`; an absolute parent is
    taken from the hierarchy's root, a relative one from the anchor (the daemon's own cgroup)."""
    if parent is None:
        return PurePosixPath(anchor_path) / defaults.CGROUP_PARENT_NAME
    given = PurePosixPath(parent)
    if not parent.strip() or ".." in given.parts or given == PurePosixPath("/"):
        raise ValueError(f"cgroup parent {parent!r} must name a cgroup, without '..'")
    if given.is_absolute():
        return given
    return PurePosixPath(anchor_path) / given
