"""Governing processes with cgroups: the one place that picks the cgroup layout.

What every layout shares: `errors` (GovernorError, TargetGone), `jobs` (job ids and the
ownership rule), `hierarchies` (mounts, /proc/<pid>/cgroup, where a cgroup's directory is),
`files` (cgroupfs access and file formats), `governor` (the attach sequence, usage, release,
leftovers) and `live` (what a running job's cgroup uses now, read from its directories).
`v1` and `v2` hold one layout each. Callers build a governor with `create_governor` and
import the names they need from this package.
"""

from __future__ import annotations

from pathlib import Path

from ffrtmp import defaults
from ffrtmp.cgroups.errors import GovernorError, TargetGone
from ffrtmp.cgroups.files import CgroupFiles
from ffrtmp.cgroups.governor import Attachment, Governor, Usage
from ffrtmp.cgroups.hierarchies import read_proc_cgroups
from ffrtmp.cgroups.jobs import is_job_name, job_id_for, job_id_named
from ffrtmp.cgroups.v1 import CgroupV1Governor, has_v1_hierarchies
from ffrtmp.cgroups.v2 import CgroupV2Governor

__all__ = [
    "Attachment",
    "CgroupFiles",
    "Governor",
    "GovernorError",
    "TargetGone",
    "Usage",
    "create_governor",
    "is_job_name",
    "job_id_for",
    "job_id_named",
    "read_proc_cgroups",
]


def create_governor(
    root: Path | str = defaults.CGROUP_ROOT,
    parent: str | None = None,
    version: int | None = None,
    proc_root: Path | str = "/proc",
    files: CgroupFiles | None = None,
    parent_cpu_weight: int | None = None,
    keep_parent_weight: bool = False,
) -> Governor:
    """A governor for the cgroup version mounted at `root` (or `version` when given).
    Problems of the machine (no cgroups, read-only, no permission) do not raise here:
    `check()` reports them and `attach()` raises them. `parent_cpu_weight` (v2 scale): the
    weight of a parent ffrtmp made (`ffrtmp.cgroups.parent_weight`), None to leave it alone;
    `keep_parent_weight`: only a parent this governor makes gets it."""
    root, proc_root = Path(root), Path(proc_root)
    if version is None:
        is_v1 = not (root / "cgroup.controllers").is_file() and has_v1_hierarchies(root, proc_root)
        version = 1 if is_v1 else 2
    weight = {"parent_cpu_weight": parent_cpu_weight, "keep_parent_weight": keep_parent_weight}
    if version == 2:
        return CgroupV2Governor(root, parent, proc_root, files, **weight)
    if version == 1:
        return CgroupV1Governor(root, parent, proc_root, files, **weight)
    raise ValueError(f"cgroup version must be 1 or 2, not {version!r}")
