"""The cgroup v2 governor on a real v2 kernel: what the fake tree of test_governor_v2.py cannot
show (the kernel's rules and its enforcement). They run in the VM of `make test-v2`
(.ci/v2vm.py) and skip where there is no v2 hierarchy with controllers to use.

The guest's CPU is emulated, and may share the host with other work: every wait is on a state,
with a deadline in minutes, never a fixed sleep.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cgroup_hierarchy import V2_PEAK_SINCE, CgroupHierarchy, kernel_version
from governor_faults import ExitsAsItIsMoved
from helpers_processes import SLEEP_BINARY, ProcessSpawner, wait_until

from ffrtmp.cgroups import (
    Attachment,
    Governor,
    GovernorError,
    TargetGone,
    create_governor,
    job_id_for,
)
from ffrtmp.identity import current_identity
from ffrtmp.limits import Limits

pytestmark = pytest.mark.vm

NEEDED = {"cpu", "memory"}
MIB = 1024 * 1024
SLOW_S = 180.0


@pytest.fixture
def v2(cgroup_hierarchy: CgroupHierarchy) -> CgroupHierarchy:
    if cgroup_hierarchy.version != 2:
        version = cgroup_hierarchy.version
        pytest.skip(f"needs cgroup v2 with controllers (make test-v2), not v{version}")
    return cgroup_hierarchy


@pytest.fixture
def governor(v2: CgroupHierarchy, real_cgroup_parent: str) -> Governor:
    return create_governor(root=v2.root, parent=real_cgroup_parent, version=2)


def controllers(path: Path) -> set[str]:
    return set(path.read_text().split())


def keyed(path: Path) -> dict[str, int]:
    """A flat-keyed cgroup file (cpu.stat, memory.events) as {key: value}."""
    pairs = (line.split() for line in path.read_text().splitlines())
    return {key: int(value) for key, value in pairs}


def attach_new(
    governor: Governor, spawn: ProcessSpawner, argv: list, limits: Limits, **popen
) -> tuple[subprocess.Popen, str, Attachment]:
    process = spawn(argv, **popen)
    identity = current_identity(process.pid)
    assert identity is not None
    job_id = job_id_for("run", Path(argv[0]).name, identity)
    return process, job_id, governor.attach(identity, job_id, limits)


def test_parent_enables_only_the_controllers_it_needs(
    governor: Governor, v2: CgroupHierarchy, real_cgroup_parent: str
) -> None:
    # The VM runner makes io and pids available too: a governor that enabled everything it
    # could, rather than what it needs, would show here.
    anchor = v2.bases[0]
    before = controllers(anchor / "cgroup.subtree_control")

    assert governor.check() is None

    assert create_governor(root=v2.root, parent=real_cgroup_parent).version == 2
    # The relative parent lands below the delegated cgroup: the kernel keeps the xattr.
    assert governor.parents == (anchor / real_cgroup_parent,)
    assert controllers(anchor / "cgroup.subtree_control") == before | NEEDED
    assert controllers(governor.parents[0] / "cgroup.subtree_control") == NEEDED


@pytest.mark.parametrize(
    ("quota", "weight", "memory_mb", "cpu_max", "cpu_weight", "memory_max"),
    [
        (50, 200, 64, "50000 100000", "200", "67108864"),
        (250, 1, None, "250000 100000", "1", "max"),
        (None, 10000, 1, "max 100000", "10000", "1048576"),
    ],
)
def test_limits_read_back_after_attaching_a_real_process(
    governor: Governor,
    v2: CgroupHierarchy,
    spawn: ProcessSpawner,
    quota: float | None,
    weight: int,
    memory_mb: int | None,
    cpu_max: str,
    cpu_weight: str,
    memory_max: str,
) -> None:
    limits = Limits(cpu_quota=quota, cpu_weight=weight, memory_limit_mb=memory_mb)
    process, job_id, attachment = attach_new(governor, spawn, [SLEEP_BINARY, "600"], limits)

    (job,) = map(Path, attachment.cgroup_paths)
    assert attachment.applied == limits
    assert (job / "cpu.max").read_text().strip() == cpu_max
    assert (job / "cpu.weight").read_text().strip() == cpu_weight
    assert (job / "memory.max").read_text().strip() == memory_max
    assert controllers(job / "cgroup.controllers") == NEEDED
    assert (job / "cgroup.procs").read_text().split() == [str(process.pid)]
    with open(f"/proc/{process.pid}/cgroup") as f:
        assert f.read().strip() == f"0::/{job.relative_to(v2.root)}"
    assert governor.leftovers() == {job_id: [process.pid]}


def test_quota_below_the_kernels_minimum_is_refused_and_leaves_nothing(
    governor: Governor, spawn: ProcessSpawner
) -> None:
    # Limits accepts any positive percentage; the kernel takes no quota under 1 ms a period.
    with pytest.raises(GovernorError) as refused:
        attach_new(governor, spawn, [SLEEP_BINARY, "600"], Limits(cpu_quota=0.5))

    assert refused.value.errno == errno.EINVAL
    assert refused.value.filename.endswith("/cpu.max")
    assert governor.leftovers() == {}


def test_cpu_quota_throttles_a_busy_process(governor: Governor, spawn: ProcessSpawner) -> None:
    busy = [sys.executable, "-c", "while True: pass"]
    _process, job_id, attachment = attach_new(governor, spawn, busy, Limits(cpu_quota=10))

    stat = Path(attachment.cgroup_paths[0]) / "cpu.stat"
    wait_until(lambda: keyed(stat)["nr_throttled"] > 0, SLOW_S, "the busy process throttled")
    usage = governor.usage(job_id)
    assert usage.cpu_seconds is not None and usage.cpu_seconds > 0


def test_memory_events_count_the_oom_kill_of_a_process_over_memory_max(
    governor: Governor, spawn: ProcessSpawner
) -> None:
    # The child allocates only once it is in its cgroup: memory charged before the move stays
    # with the old cgroup.
    hungry = [
        sys.executable,
        "-c",
        "import sys; print('ready', flush=True); sys.stdin.readline(); "
        "data = b'x' * (256 << 20); sys.stdin.readline()",
    ]
    limit_mb = 32
    process, job_id, attachment = attach_new(
        governor,
        spawn,
        hungry,
        Limits(cpu_quota=None, memory_limit_mb=limit_mb),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline() == "ready\n"

    process.stdin.write("allocate\n")
    process.stdin.flush()
    assert process.wait(timeout=SLOW_S) == -signal.SIGKILL

    events = keyed(Path(attachment.cgroup_paths[0]) / "memory.events")
    assert events["oom_kill"] >= 1
    usage = governor.usage(job_id)
    assert usage.oom_killed is True
    if kernel_version() >= V2_PEAK_SINCE:  # memory.peak
        assert usage.peak_memory_bytes is not None
        assert 0 < usage.peak_memory_bytes <= limit_mb * MIB
    else:
        assert usage.peak_memory_bytes is None


def test_an_emptied_job_cgroup_is_removed(governor: Governor, spawn: ProcessSpawner) -> None:
    process, job_id, attachment = attach_new(
        governor, spawn, [SLEEP_BINARY, "600"], Limits(memory_limit_mb=64)
    )
    job = Path(attachment.cgroup_paths[0])

    assert governor.release(job_id) is False  # EBUSY: the kernel keeps a populated cgroup
    assert job.is_dir()

    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=SLOW_S)
    assert governor.release(job_id) is True
    assert not job.exists()
    assert governor.leftovers() == {}


def test_check_explains_a_parent_whose_parent_holds_a_process(
    v2: CgroupHierarchy, real_cgroup_parent: str, spawn: ProcessSpawner
) -> None:
    # "No internal processes": a cgroup holding a process cannot enable controllers for its
    # children, so a parent below it can never hold limited job cgroups.
    occupied = v2.bases[0] / real_cgroup_parent
    occupied.mkdir()
    sleeper = spawn([SLEEP_BINARY, "600"])
    (occupied / "cgroup.procs").write_text(str(sleeper.pid))
    governor = create_governor(root=v2.root, parent=f"{real_cgroup_parent}/ffrtmp", version=2)

    problem = governor.check()

    assert problem is not None and "holds processes" in problem, problem
    assert not (occupied / "ffrtmp").exists()
    assert (occupied / "cgroup.procs").read_text().split() == [str(sleeper.pid)]


def test_attaching_a_process_that_exited_unreaped_says_it_is_gone(
    governor: Governor, spawn: ProcessSpawner
) -> None:
    # ffmpeg run for a moment (`ffmpeg -version`) is a zombie until its parent reaps it, and
    # the daemon may be attaching it just then.
    process = spawn([SLEEP_BINARY, "600"])
    identity = current_identity(process.pid)
    assert identity is not None
    os.kill(process.pid, signal.SIGKILL)
    wait_until(lambda: not identity.is_running(), SLOW_S, f"pid {process.pid} to be a zombie")
    job_id = job_id_for("run", "sleep", identity)

    with pytest.raises(GovernorError) as caught:
        governor.attach(identity, job_id, Limits())

    assert governor.leftovers() == {}
    assert isinstance(caught.value, TargetGone), f"errno {caught.value.errno}: {caught.value}"


def test_a_process_that_exits_as_it_is_moved_is_gone_not_an_error(
    v2: CgroupHierarchy, real_cgroup_parent: str, spawn: ProcessSpawner
) -> None:
    process = spawn([SLEEP_BINARY, "600"])
    identity = current_identity(process.pid)
    assert identity is not None
    files = ExitsAsItIsMoved(identity, timeout=SLOW_S)
    governor = create_governor(root=v2.root, parent=real_cgroup_parent, version=2, files=files)
    job_id = job_id_for("run", "sleep", identity)

    with pytest.raises(GovernorError) as caught:
        governor.attach(identity, job_id, Limits())

    assert isinstance(caught.value, TargetGone), f"errno {caught.value.errno}: {caught.value}"
    assert process.poll() == -signal.SIGKILL
    assert governor.leftovers() == {}
