"""The cgroup v1 governor on this machine's REAL hierarchies (/sys/fs/cgroup/<controller>).

Every cgroup is created in a folder with a unique name below the test process's own cgroup in
each hierarchy, and removed at the end. Only processes the tests start are moved, and they are
killed and reaped before their cgroups are removed.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from governor_faults import ExitsAsItIsMoved
from helpers_processes import SLEEP_BINARY, ProcessSpawner, wait_until

from ffrtmp.cgroups import (
    CgroupFiles,
    Governor,
    GovernorError,
    TargetGone,
    create_governor,
    job_id_for,
    read_proc_cgroups,
)
from ffrtmp.identity import ProcessIdentity, current_identity
from ffrtmp.limits import MIB, Limits

CGROUP_ROOT = Path("/sys/fs/cgroup")
QUOTA_TEST_CPU_S = 0.25  # about 1.25 s at the 20% quota
# The CPU a held cgroup may use ahead of its proportional share: the quota of the period the
# window starts in (20 ms of each 100 ms) and the slices CFS hands each core out of it.
QUOTA_BURST_S = 0.05

pytestmark = pytest.mark.root


@dataclass
class RealV1:
    governor: Governor
    processes: ProcessSpawner
    parent_name: str

    def hierarchy(self, name: str):
        return next(h for h in self.governor.hierarchies if h.name == name)

    def job(self, name: str, job_id: str) -> Path:
        return self.hierarchy(name).parent / job_id

    def start(self, argv: list[str], **popen_kwargs) -> tuple[subprocess.Popen, ProcessIdentity]:
        child = self.processes.spawn(argv, **popen_kwargs)
        identity = current_identity(child.pid)
        assert identity is not None
        return child, identity


def _remove_test_cgroups(governor: Governor, parent_name: str, ours: set[int]) -> None:
    own = read_proc_cgroups(Path("/proc/self/cgroup"))
    for hierarchy in governor.hierarchies:
        parent = hierarchy.parent
        assert parent.name == parent_name  # never anything but the folder this test made
        if not parent.is_dir():
            continue
        for job in (p for p in parent.iterdir() if p.is_dir()):
            for pid in map(int, (job / "cgroup.procs").read_text().split()):
                if pid in ours:  # only a process this test moved goes back where it was
                    home = hierarchy.directory(own[hierarchy.key])
                    (home / "cgroup.procs").write_text(str(pid))
            job.rmdir()
        parent.rmdir()


@pytest.fixture
def v1(root) -> Iterator[RealV1]:
    parent_name = f"ffrtmp-test-{uuid.uuid4().hex[:12]}"
    governor = create_governor(CGROUP_ROOT, parent=parent_name)
    if governor.version != 1:
        pytest.skip(f"{CGROUP_ROOT} holds no cgroup v1 cpu and memory hierarchies")
    processes = ProcessSpawner()
    try:
        problem = governor.check()  # creates the parent folders
        if problem is not None:
            pytest.skip(f"cgroup v1 is not writable here: {problem}")
        yield RealV1(governor, processes, parent_name)
    finally:
        processes.close()
        ours = {p.pid for p in processes.processes}
        _remove_test_cgroups(governor, parent_name, ours)


def test_this_machine_is_detected_as_cgroup_v1_with_separate_cpu_and_cpuacct(v1):
    names = [h.name for h in v1.governor.hierarchies]
    own = read_proc_cgroups(Path("/proc/self/cgroup"))

    assert names == ["cpu", "cpuacct", "memory"]
    for hierarchy in v1.governor.hierarchies:
        assert hierarchy.parent == hierarchy.directory(own[hierarchy.key]) / v1.parent_name
        assert hierarchy.parent.is_dir()


def test_attach_limits_cpu_and_memory_in_their_own_hierarchies(v1):
    child, identity = v1.start([SLEEP_BINARY, "60"])
    job_id = job_id_for("auto", "sleep", identity)

    attachment = v1.governor.attach(identity, job_id, Limits(50, 200, 64))

    jobs = {name: v1.job(name, job_id) for name in ("cpu", "cpuacct", "memory")}
    assert attachment.version == 1
    assert attachment.cgroup_paths == tuple(str(p) for p in jobs.values())
    assert attachment.applied == Limits(50, 200, 64)
    memberships = read_proc_cgroups(Path(f"/proc/{child.pid}/cgroup"))
    for name, job in jobs.items():
        assert memberships[name] == v1.hierarchy(name).cgroup_path(job)
        assert (job / "cgroup.procs").read_text().split() == [str(child.pid)]
    assert (jobs["cpu"] / "cpu.cfs_quota_us").read_text() == "50000\n"
    assert (jobs["cpu"] / "cpu.cfs_period_us").read_text() == "100000\n"
    assert (jobs["cpu"] / "cpu.shares").read_text() == "2048\n"
    assert (jobs["memory"] / "memory.limit_in_bytes").read_text() == f"{64 * MIB}\n"
    assert v1.governor.leftovers() == {job_id: [child.pid]}
    assert v1.governor.release(job_id) is False  # still populated

    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=60)
    usage = v1.governor.usage(job_id)

    assert isinstance(usage.peak_memory_bytes, int) and usage.peak_memory_bytes >= 0
    assert isinstance(usage.cpu_seconds, float) and usage.cpu_seconds >= 0
    assert usage.oom_killed is False
    assert v1.governor.leftovers() == {job_id: []}
    assert v1.governor.release(job_id) is True
    assert not any(job.exists() for job in jobs.values())


def test_no_limits_read_back_as_none(v1):
    _, identity = v1.start([SLEEP_BINARY, "60"])
    job_id = job_id_for("manual", "sleep", identity)

    attachment = v1.governor.attach(identity, job_id, Limits())

    assert attachment.applied == Limits()
    assert (v1.job("cpu", job_id) / "cpu.cfs_quota_us").read_text() == "-1\n"
    assert (v1.job("cpu", job_id) / "cpu.shares").read_text() == "1024\n"


def test_attach_to_an_exited_pid_raises_and_leaves_no_folder(v1):
    child, identity = v1.start([SLEEP_BINARY, "60"])
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=60)
    job_id = job_id_for("auto", "sleep", identity)

    with pytest.raises(ProcessLookupError) as caught:
        v1.governor.attach(identity, job_id, Limits(50))

    assert isinstance(caught.value, TargetGone)
    assert not any((h.parent / job_id).exists() for h in v1.governor.hierarchies)
    assert v1.governor.leftovers() == {}


def test_attaching_a_process_that_exited_unreaped_says_it_is_gone(v1):
    # A short ffmpeg run (`ffmpeg -version`) is a zombie until its parent reaps it, and the
    # daemon may be attaching it just then: v1 takes a zombie's pid in cgroup.procs without an
    # error and leaves it where it was.
    child, identity = v1.start([SLEEP_BINARY, "60"])
    os.kill(child.pid, signal.SIGKILL)
    wait_until(lambda: not identity.is_running(), 10, f"pid {child.pid} to be a zombie")
    job_id = job_id_for("auto", "sleep", identity)

    with pytest.raises(GovernorError) as caught:
        v1.governor.attach(identity, job_id, Limits(50))

    assert isinstance(caught.value, TargetGone), f"errno {caught.value.errno}: {caught.value}"
    assert not any((h.parent / job_id).exists() for h in v1.governor.hierarchies)
    assert v1.governor.leftovers() == {}


def test_a_process_that_exits_as_it_is_moved_is_gone_not_an_error(v1):
    child, identity = v1.start([SLEEP_BINARY, "60"])
    governor = create_governor(CGROUP_ROOT, parent=v1.parent_name, files=ExitsAsItIsMoved(identity))
    job_id = job_id_for("auto", "sleep", identity)

    with pytest.raises(GovernorError) as caught:
        governor.attach(identity, job_id, Limits(50))

    assert isinstance(caught.value, TargetGone), f"errno {caught.value.errno}: {caught.value}"
    assert child.poll() == -signal.SIGKILL
    assert not any((h.parent / job_id).exists() for h in v1.governor.hierarchies)


class FailingMemoryMove(CgroupFiles):
    """Stands in for a kernel refusing the pid in the memory hierarchy, after the cpu and
    cpuacct moves succeeded: a partial move cannot be provoked on purpose otherwise."""

    def write(self, path: Path, text: str) -> None:
        if path.name == "cgroup.procs" and "/memory/" in str(path) and "auto-" in str(path):
            raise OSError(errno.EINVAL, "Invalid argument")
        super().write(path, text)


def test_a_partial_move_is_undone_and_leaves_no_folder(v1):
    child, identity = v1.start([SLEEP_BINARY, "60"])
    before = read_proc_cgroups(Path(f"/proc/{child.pid}/cgroup"))
    governor = create_governor(CGROUP_ROOT, parent=v1.parent_name, files=FailingMemoryMove())
    job_id = job_id_for("auto", "sleep", identity)

    with pytest.raises(GovernorError) as caught:
        governor.attach(identity, job_id, Limits(50))

    assert caught.value.errno == errno.EINVAL
    assert read_proc_cgroups(Path(f"/proc/{child.pid}/cgroup")) == before
    assert not any((h.parent / job_id).exists() for h in v1.governor.hierarchies)


def test_the_memory_limit_binds_in_the_memory_hierarchy(v1):
    """The original wrote the memory limit to the wrong hierarchy: here it must OOM-kill."""
    if Path("/proc/swaps").read_text().count("\n") > 1:
        pytest.skip("with swap the process would swap instead of being killed")
    grab = "import sys; sys.stdin.readline(); b = b'x' * (256 << 20); sys.stdin.readline()"
    child, identity = v1.start([sys.executable, "-c", grab], stdin=subprocess.PIPE)
    job_id = job_id_for("auto", "python", identity)
    v1.governor.attach(identity, job_id, Limits(memory_limit_mb=64))

    child.stdin.write(b"go\n")
    child.stdin.flush()
    assert child.wait(timeout=10) == -signal.SIGKILL

    usage = v1.governor.usage(job_id)
    assert usage.oom_killed is True
    assert usage.peak_memory_bytes <= 64 * MIB
    assert v1.governor.release(job_id) is True


def test_the_cpu_quota_binds_in_the_cpu_hierarchy(v1):
    """The original never wrote the v1 quota. A busy loop held to 20% of a CPU uses at most
    0.2 s of CPU per second of wall time (plus a period's quota of burst); unheld, it would
    use it several times as fast. It is measured until it has used enough CPU to tell, not
    over a fixed second: on a busy machine it gets its CPU more slowly, never faster."""
    child, identity = v1.start([sys.executable, "-c", "while True: pass"])
    job_id = job_id_for("auto", "python", identity)
    held_since = time.monotonic()  # before the attach, so the window holds all it was given
    v1.governor.attach(identity, job_id, Limits(cpu_quota=20))

    def cpu_used() -> float:
        return v1.governor.usage(job_id).cpu_seconds or 0.0

    used = wait_until(
        lambda: (seconds := cpu_used()) >= QUOTA_TEST_CPU_S and seconds,
        timeout=60,
        what=f"{QUOTA_TEST_CPU_S} s of CPU in the job cgroup",
    )
    elapsed = time.monotonic() - held_since

    assert used <= 0.2 * elapsed + QUOTA_BURST_S, f"{used:.3f} s of CPU in {elapsed:.3f} s"
