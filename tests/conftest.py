"""Fixtures shared by the whole suite: databases on tmp_path and real child processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# The real cgroup hierarchy here (v1 on the host, v2 in the VM of `make test-v2`): its fixtures and
# report header register by being names of this module.
from cgroup_hierarchy import (  # noqa: F401
    cgroup_hierarchy,
    job_cgroups,
    pytest_report_header,
    real_cgroup_parent,
)
from helpers_processes import ProcessSpawner, make_ffmpeg

from ffrtmp import failpoints


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ffrtmp.db"


@pytest.fixture
def store(db_path: Path):
    from ffrtmp.database import open_for_writing
    from ffrtmp.store import Store

    s = Store(open_for_writing(db_path))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(autouse=True)
def _no_failpoints() -> Iterator[None]:
    """A failpoint armed by one test never leaks into the next."""
    failpoints.configure("")
    yield
    failpoints.configure("")


@pytest.fixture
def fake_ffmpeg(tmp_path: Path) -> Path:
    """A copy of `sleep` named ffmpeg: matches the default rule, does nothing harmful."""
    directory = tmp_path / "bin"
    directory.mkdir(exist_ok=True)
    return make_ffmpeg(directory)


@pytest.fixture
def spawn() -> Iterator[ProcessSpawner]:
    """Real processes for a test, each killed by its pid and reaped at the end."""
    spawner = ProcessSpawner()
    try:
        yield spawner
    finally:
        spawner.close()


def _own_cgroup_dirs(parent_name: str) -> list[Path]:
    """Where a relative cgroup parent lands: below this process's own cgroup, per v1
    hierarchy (the only writable cgroups on the test machines)."""
    dirs = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in ("cpu", "cpuacct", "memory"):
                if controller in controllers.split(","):
                    mount = Path("/sys/fs/cgroup") / controller
                    if mount.is_dir():
                        dirs.append(mount / path.lstrip("/") / parent_name)
    return dirs


def _remove_tree(directory: Path) -> None:
    if not directory.is_dir():
        return
    for child in directory.iterdir():
        if child.is_dir():
            _remove_tree(child)
    try:
        directory.rmdir()
    except OSError:
        pass


@pytest.fixture
def cgroup_parent(spawn: ProcessSpawner) -> Iterator[str]:
    """A unique job-cgroup parent below the test's own cgroups, removed afterwards, after
    the processes the test spawned are ended (a populated cgroup cannot be removed)."""
    import uuid

    if os.geteuid() != 0 or not os.access("/sys/fs/cgroup/cpu", os.W_OK):
        pytest.skip("needs root and writable cgroup v1 hierarchies")
    name = f"ffrtmp-test-{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        spawn.close()
        for directory in _own_cgroup_dirs(name):
            _remove_tree(directory)
