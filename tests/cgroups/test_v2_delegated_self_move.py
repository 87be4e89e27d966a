"""A governor that finds itself in the very cgroup systemd delegated to it (Delegate=yes on
systemd before 254, which has no DelegateSubgroup=) moves itself, every thread, into a leaf
below it and puts its job cgroups beside that leaf: on the real v2 kernel of the VM
(`make test-v2`), where "no internal processes" is the kernel's rule, not a fake's.

The process that governs is a child of the test (a Python process with extra threads), started
in a cgroup the test made and marked delegated as systemd does (`trusted.delegate`); a second
child in an unmarked cgroup shows that without delegation (a shell, a container) nothing moves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cgroup_hierarchy import CgroupHierarchy, remove_tree
from helpers_processes import SLEEP_BINARY, ProcessSpawner

pytestmark = pytest.mark.vm

MIB = 1024 * 1024
# The governing child: starts two threads that stay alive, builds the governor the daemon
# would build (default parent), checks it, attaches the pid given, and reports as JSON what
# /proc shows for itself and each of its threads; then waits for its stdin to close.
GOVERNING_CHILD = r"""
import json, os, sys, threading
from pathlib import Path
from ffrtmp.cgroups import create_governor, job_id_for
from ffrtmp.identity import current_identity
from ffrtmp.limits import Limits

hold = threading.Event()
threads = [threading.Thread(target=hold.wait, daemon=True) for _ in range(2)]
for thread in threads:
    thread.start()
governor = create_governor(root="/sys/fs/cgroup", version=2)
report = {"problem": governor.check(), "parents": [str(p) for p in governor.parents]}
if report["problem"] is None:
    identity = current_identity(int(sys.argv[1]))
    job_id = job_id_for("auto", "sleep", identity)
    report["job"] = governor.attach(identity, job_id, Limits(50, 100, 64)).cgroup_paths[0]
tasks = Path("/proc/self/task")
report["threads"] = {t: (tasks / t / "cgroup").read_text() for t in os.listdir(tasks)}
report["process"] = Path("/proc/self/cgroup").read_text()
print(json.dumps(report), flush=True)
sys.stdin.read()
hold.set()
"""


@pytest.fixture
def v2(cgroup_hierarchy: CgroupHierarchy) -> CgroupHierarchy:
    if cgroup_hierarchy.version != 2:
        version = cgroup_hierarchy.version
        pytest.skip(f"needs cgroup v2 with controllers (make test-v2), not v{version}")
    return cgroup_hierarchy


@pytest.fixture
def service_cgroup(v2: CgroupHierarchy, spawn: ProcessSpawner) -> Iterator[Path]:
    """A cgroup shaped like a systemd service's: `<slice>/ffrtmp.service`, the slice not
    delegated (as system.slice), below the test's delegated cgroup; removed with all below it
    once the test's processes are ended."""
    delegated = v2.bases[0]
    slice_ = delegated / f"ffrtmp-test-{uuid.uuid4().hex[:10]}.slice"
    try:
        for cgroup in (delegated, slice_):
            if not cgroup.is_dir():
                cgroup.mkdir()
            enabled = set((cgroup / "cgroup.subtree_control").read_text().split())
            if {"cpu", "memory"} - enabled:
                # Neither holds a process (the runner's layout): this cannot fail.
                (cgroup / "cgroup.subtree_control").write_text("+cpu +memory")
        service = slice_ / "ffrtmp.service"
        service.mkdir()
        yield service
    finally:
        spawn.close()
        remove_tree(slice_)


def start_governing_child(
    spawn: ProcessSpawner, cgroup: Path, target_pid: int
) -> tuple[subprocess.Popen, dict]:
    def into_cgroup() -> None:
        # Between fork and exec: the child starts where systemd would start a service's main
        # process, in the service's own cgroup.
        with open(cgroup / "cgroup.procs", "w") as f:
            f.write(str(os.getpid()))

    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    child = spawn.spawn(
        [sys.executable, "-c", GOVERNING_CHILD, str(target_pid)],
        wait_exec=False,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=into_cgroup,
    )
    assert child.stdout is not None
    line = child.stdout.readline()  # the child's report; it then waits on its stdin
    assert line, f"the governing child exited with {child.wait(timeout=60)} before reporting"
    return child, json.loads(line)


def cgroup_path(v2: CgroupHierarchy, directory: Path) -> str:
    return f"0::/{directory.relative_to(v2.root)}\n"


def test_a_governor_in_its_delegated_cgroup_moves_every_thread_into_a_leaf(
    v2: CgroupHierarchy, service_cgroup: Path, spawn: ProcessSpawner
) -> None:
    os.setxattr(service_cgroup, "trusted.delegate", b"1")  # as systemd marks Delegate=yes
    sleeper = spawn([SLEEP_BINARY, "300"])

    child, report = start_governing_child(spawn, service_cgroup, sleeper.pid)

    leaf = service_cgroup / "daemon"
    parent = service_cgroup / "ffrtmp"
    assert report["problem"] is None
    assert report["parents"] == [str(parent)]
    assert report["process"] == cgroup_path(v2, leaf)
    assert len(report["threads"]) == 3  # the main thread and the two it started
    assert set(report["threads"].values()) == {cgroup_path(v2, leaf)}
    # The service's cgroup holds no process now, so it enables the controllers for its
    # children: the leaf and the parent of the job cgroups, side by side.
    assert (service_cgroup / "cgroup.procs").read_text() == ""
    assert (leaf / "cgroup.procs").read_text().split() == [str(child.pid)]
    assert set((service_cgroup / "cgroup.subtree_control").read_text().split()) == {
        "cpu",
        "memory",
    }
    job = Path(report["job"])
    assert job.parent == parent
    assert (job / "cpu.max").read_text() == "50000 100000\n"
    assert (job / "memory.max").read_text() == f"{64 * MIB}\n"
    assert Path(f"/proc/{sleeper.pid}/cgroup").read_text() == cgroup_path(v2, job)


def test_a_governor_in_a_cgroup_not_delegated_stays_there_and_says_why_it_cannot_govern(
    v2: CgroupHierarchy, service_cgroup: Path, spawn: ProcessSpawner
) -> None:
    # A shell or a container: the process's cgroup is not marked delegated, so it is not the
    # governor's to rearrange; it keeps today's behaviour (a clear EBUSY sentence).
    sleeper = spawn([SLEEP_BINARY, "300"])

    child, report = start_governing_child(spawn, service_cgroup, sleeper.pid)

    assert report["problem"] is not None and "holds processes" in report["problem"]
    assert report["process"] == cgroup_path(v2, service_cgroup)
    assert set(report["threads"].values()) == {cgroup_path(v2, service_cgroup)}
    assert not (service_cgroup / "daemon").exists()
    assert (service_cgroup / "cgroup.subtree_control").read_text().split() == []
    assert (service_cgroup / "cgroup.procs").read_text().split() == [str(child.pid)]
