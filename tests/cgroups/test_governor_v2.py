"""The cgroup v2 governor, on a FAKE cgroupfs tree in tmp_path.

This machine's cgroup v2 mount offers no cpu or memory controller, so real v2 job cgroups cannot
be limited here. `FakeCgroupV2Files` does on a plain directory tree what the kernel does
(interface files appear on mkdir, subtree_control rules, moving a pid, EBUSY on rmdir of a
populated cgroup) and `/proc/<pid>/cgroup` is a fake file too. The processes are real.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from candidates import make_candidate
from helpers_processes import SLEEP_BINARY, STATE_TIMEOUT_S, ProcessSpawner, wait_until
from sqlalchemy import select

from ffrtmp import failpoints
from ffrtmp.attach import Attacher
from ffrtmp.backoff import BackoffPolicy
from ffrtmp.cgroups import (
    Attachment,
    CgroupFiles,
    Governor,
    GovernorError,
    TargetGone,
    Usage,
    create_governor,
    is_job_name,
    job_id_for,
)
from ffrtmp.clock import system_now
from ffrtmp.identity import ProcessIdentity, current_identity
from ffrtmp.lifecycle import Followed, Lifecycle
from ffrtmp.limits import Limits
from ffrtmp.models import Process, ProcessEvent
from ffrtmp.states import EventKind, ProcessState
from ffrtmp.utctime import utc

LIMIT_FILES = ("cpu.max", "cpu.weight", "memory.max")


class FakeCgroupV2Files(CgroupFiles):
    """cgroupfs v2 behaviour on a plain directory tree, plus one rule the kernel lacks so that
    the order becomes observable: a pid written to a job cgroup's cgroup.procs is refused
    (EINVAL) unless all of that cgroup's limit files were written before."""

    def __init__(self, root: Path, proc: Path) -> None:
        self.root, self.proc = root, proc
        self.written_since_mkdir: dict[Path, list[str]] = {}
        self.writes: list[tuple[Path, str]] = []  # every write, in order

    def make_root(self, controllers: str) -> None:
        self.root.mkdir(parents=True)
        for name, text in (
            ("cgroup.controllers", controllers),
            ("cgroup.subtree_control", ""),
            ("cgroup.procs", ""),
        ):
            (self.root / name).write_text(text + "\n")

    def mkdir(self, path: Path) -> None:
        os.mkdir(path)
        enabled = (path.parent / "cgroup.subtree_control").read_text().split()
        files = {
            "cgroup.controllers": " ".join(enabled),
            "cgroup.subtree_control": "",
            "cgroup.procs": "",
            "cgroup.events": "populated 0\nfrozen 0",
        }
        if "cpu" in enabled:
            files |= {"cpu.max": "max 100000", "cpu.weight": "100", "cpu.stat": "usage_usec 0"}
        if "memory" in enabled:  # no memory.peak, as on kernels before 5.19
            files |= {"memory.max": "max", "memory.events": "low 0\nmax 0\noom 0\noom_kill 0"}
        for name, text in files.items():
            (path / name).write_text(text + "\n")
        self.written_since_mkdir[path] = []

    def rmdir(self, path: Path) -> None:
        if not path.is_dir():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
        if self.pids(path) or any(p.is_dir() for p in path.iterdir()):
            raise OSError(errno.EBUSY, "Device or resource busy", str(path))
        for file in path.iterdir():
            file.unlink()
        os.rmdir(path)

    def write(self, path: Path, text: str) -> None:
        if not path.is_file():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
        cgroup = path.parent
        if path.name == "cgroup.subtree_control":
            self._write_subtree_control(cgroup, text)
        elif path.name == "cgroup.procs":
            written = self.written_since_mkdir.get(cgroup, [])
            if is_job_name(cgroup.name) and not set(LIMIT_FILES) <= set(written):
                raise OSError(errno.EINVAL, "fake cgroupfs: pid written before the limits")
            self.put_process(int(text), cgroup)
        else:
            path.write_text(text + "\n")
        self.written_since_mkdir.setdefault(cgroup, []).append(path.name)
        self.writes.append((path, text))

    def _write_subtree_control(self, cgroup: Path, text: str) -> None:
        enabled = set((cgroup / "cgroup.subtree_control").read_text().split())
        available = set((cgroup / "cgroup.controllers").read_text().split())
        for token in text.split():
            name = token[1:]
            if token[0] == "+":
                if name not in available:
                    raise OSError(errno.ENOENT, "No such file or directory")
                if cgroup != self.root and self.pids(cgroup):
                    raise OSError(errno.EBUSY, "Device or resource busy")  # no internal processes
                enabled.add(name)
            else:
                enabled.discard(name)
        (cgroup / "cgroup.subtree_control").write_text(" ".join(sorted(enabled)) + "\n")

    def pids(self, cgroup: Path) -> list[int]:
        return [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]

    def put_process(self, pid: int, cgroup: Path) -> None:
        """Move pid into cgroup as the kernel does: out of every other cgroup, /proc updated."""
        for procs in self.root.rglob("cgroup.procs"):
            if pid in self.pids(procs.parent):
                kept = [p for p in self.pids(procs.parent) if p != pid]
                procs.write_text("".join(f"{p}\n" for p in kept))
        (cgroup / "cgroup.procs").write_text("".join(f"{p}\n" for p in [*self.pids(cgroup), pid]))
        proc_dir = self.proc / ("self" if pid == os.getpid() else str(pid))
        proc_dir.mkdir(parents=True, exist_ok=True)
        relative = cgroup.relative_to(self.root)
        (proc_dir / "cgroup").write_text(f"0::/{'' if relative == Path('.') else relative}\n")

    def exit_process(self, pid: int) -> None:
        """What the kernel does when a process exits: it leaves its cgroup."""
        for procs in self.root.rglob("cgroup.procs"):
            kept = [p for p in self.pids(procs.parent) if p != pid]
            procs.write_text("".join(f"{p}\n" for p in kept))


@dataclass
class FakeMachine:
    root: Path
    proc: Path
    files: FakeCgroupV2Files
    service: Path  # the delegated cgroup of the daemon's systemd unit

    def governor(self, parent: str | None = None) -> Governor:
        return create_governor(self.root, parent=parent, proc_root=self.proc, files=self.files)


def build_machine(tmp_path: Path, *, subgroup: bool = True, controllers: str = "cpu io memory"):
    """A systemd-like tree: /system.slice/ffrtmp.service delegated (trusted.delegate), with the
    daemon in its `supervisor` subgroup (DelegateSubgroup=) or, with subgroup=False, in it."""
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    files = FakeCgroupV2Files(root, proc)
    files.make_root(controllers)
    files.write(root / "cgroup.subtree_control", " ".join(f"+{c}" for c in controllers.split()))
    slice_ = root / "system.slice"
    files.mkdir(slice_)
    files.write(slice_ / "cgroup.subtree_control", "+cpu +io +memory")
    service = slice_ / "ffrtmp.service"
    files.mkdir(service)
    os.setxattr(service, "trusted.delegate", b"1")
    home = service / "supervisor" if subgroup else service
    if subgroup:
        files.mkdir(home)
    files.put_process(os.getpid(), home)  # the daemon: writes proc/self/cgroup
    other = slice_ / "other.service"
    files.mkdir(other)
    return FakeMachine(root, proc, files, service)


@pytest.fixture
def machine(tmp_path: Path) -> FakeMachine:
    return build_machine(tmp_path)


@pytest.fixture
def processes() -> Iterator[ProcessSpawner]:
    spawner = ProcessSpawner()
    try:
        yield spawner
    finally:
        spawner.close()


@pytest.fixture
def sleeper(machine: FakeMachine, processes: ProcessSpawner) -> ProcessIdentity:
    """A real sleep process, placed in /system.slice/other.service of the fake tree."""
    child = processes.spawn([SLEEP_BINARY, "60"])
    machine.files.put_process(child.pid, machine.root / "system.slice" / "other.service")
    identity = current_identity(child.pid)
    assert identity is not None
    return identity


def fake_proc_cgroup(machine: FakeMachine, pid: int) -> str:
    return (machine.proc / str(pid) / "cgroup").read_text()


def test_default_parent_is_beside_the_daemon_subgroup_in_its_delegated_cgroup(machine):
    governor = machine.governor()

    assert governor.version == 2
    assert governor.parents == (machine.service / "ffrtmp",)
    assert governor.check() is None
    assert (machine.service / "cgroup.subtree_control").read_text() == "cpu memory\n"
    assert (machine.service / "ffrtmp" / "cgroup.subtree_control").read_text() == "cpu memory\n"
    assert (machine.root / "cgroup.subtree_control").read_text() == "cpu io memory\n"


def test_attach_writes_the_limits_then_moves_the_pid_and_verifies_it(machine, sleeper):
    governor = machine.governor()
    job_id = job_id_for("auto", "sleep", sleeper)
    job = machine.service / "ffrtmp" / job_id

    attachment = governor.attach(sleeper, job_id, Limits(150, 300, 256))

    # Where it came from is part of the answer: `ffrtmp release` moves it back there.
    origin = (("", "/system.slice/other.service"),)
    # cgroup v2 cannot move the memory it was charged before: the attachment says so.
    expected = Attachment(2, (str(job),), Limits(150, 300, 256), origin, memory_charge_moved=False)
    assert attachment == expected
    assert (job / "cpu.max").read_text() == "150000 100000\n"
    assert (job / "cpu.weight").read_text() == "300\n"
    assert (job / "memory.max").read_text() == f"{256 * 1024 * 1024}\n"
    assert machine.files.pids(job) == [sleeper.pid]
    assert machine.files.pids(machine.root / "system.slice" / "other.service") == []
    rel = job.relative_to(machine.root)
    assert fake_proc_cgroup(machine, sleeper.pid) == f"0::/{rel}\n"
    names = [path.name for path, _ in machine.files.writes if path.parent == job]
    assert names == [*LIMIT_FILES, "cgroup.procs"]


def test_no_limits_are_written_as_max(machine, sleeper):
    job_id = job_id_for("manual", "sleep", sleeper)
    job = machine.service / "ffrtmp" / job_id

    attachment = machine.governor().attach(sleeper, job_id, Limits())

    assert (job / "cpu.max").read_text() == "max 100000\n"
    assert (job / "cpu.weight").read_text() == "100\n"
    assert (job / "memory.max").read_text() == "max\n"
    assert attachment.applied == Limits()


def test_the_fake_refuses_a_pid_written_before_the_limits(machine, sleeper):
    """The order assertion above can fail: this is what happens to a pid written first."""
    governor = machine.governor()
    assert governor.check() is None
    job = machine.service / "ffrtmp" / job_id_for("auto", "sleep", sleeper)
    machine.files.mkdir(job)

    with pytest.raises(OSError) as caught:
        machine.files.write(job / "cgroup.procs", str(sleeper.pid))

    assert caught.value.errno == errno.EINVAL
    assert machine.files.pids(job) == []


def test_a_pid_whose_start_time_changed_is_not_moved(machine, sleeper):
    impostor = ProcessIdentity(sleeper.boot_id, sleeper.pid, sleeper.start_ticks + 1)
    job_id = job_id_for("auto", "sleep", impostor)
    before = fake_proc_cgroup(machine, sleeper.pid)

    with pytest.raises(ProcessLookupError) as caught:
        machine.governor().attach(impostor, job_id, Limits(50))

    assert isinstance(caught.value, TargetGone)
    assert caught.value.errno == errno.ESRCH
    assert not (machine.service / "ffrtmp" / job_id).exists()
    assert fake_proc_cgroup(machine, sleeper.pid) == before
    assert machine.files.pids(machine.root / "system.slice" / "other.service") == [sleeper.pid]


def test_failpoint_before_the_pid_write_raises_ebusy_and_leaves_no_cgroup(machine, sleeper):
    governor = machine.governor()
    job_id = job_id_for("auto", "sleep", sleeper)
    try:
        failpoints.configure("governor.attach=EBUSY*1")
        with pytest.raises(OSError) as caught:
            governor.attach(sleeper, job_id, Limits(50))
    finally:
        failpoints.configure("")

    assert caught.value.errno == errno.EBUSY
    assert isinstance(caught.value, GovernorError)
    assert caught.value.filename == str(machine.service / "ffrtmp" / job_id / "cgroup.procs")
    assert not (machine.service / "ffrtmp" / job_id).exists()
    assert machine.files.pids(machine.root / "system.slice" / "other.service") == [sleeper.pid]
    # Armed once: the next attempt goes through.
    assert governor.attach(sleeper, job_id, Limits(50)).applied == Limits(50)


def test_daemon_inside_its_delegated_cgroup_moves_into_a_leaf_beside_the_jobs(tmp_path):
    """systemd before 254 (no DelegateSubgroup=) starts the daemon in the delegated cgroup."""
    machine = build_machine(tmp_path, subgroup=False)
    governor = machine.governor()

    assert governor.check() is None

    assert governor.parents == (machine.service / "ffrtmp",)
    assert machine.files.pids(machine.service) == []
    assert machine.files.pids(machine.service / "daemon") == [os.getpid()]
    own = (machine.proc / "self" / "cgroup").read_text()
    assert own == "0::/system.slice/ffrtmp.service/daemon\n"
    assert (machine.service / "cgroup.subtree_control").read_text() == "cpu memory\n"
    assert (machine.service / "ffrtmp" / "cgroup.subtree_control").read_text() == "cpu memory\n"


def test_daemon_inside_a_cgroup_not_delegated_gets_a_clear_ebusy(tmp_path, processes):
    machine = build_machine(tmp_path, subgroup=False)
    os.removexattr(machine.service, "trusted.delegate")  # a shell or a container: not systemd's
    governor = machine.governor()

    problem = governor.check()

    assert governor.parents == (machine.service / "ffrtmp",)
    assert problem is not None
    assert "holds processes" in problem and "Delegate=yes" in problem
    assert not (machine.service / "daemon").exists()
    assert (machine.service / "cgroup.subtree_control").read_text() == "\n"
    assert not (machine.service / "ffrtmp").exists()
    child = processes.spawn([SLEEP_BINARY, "60"])
    identity = current_identity(child.pid)
    with pytest.raises(GovernorError) as caught:
        governor.attach(identity, job_id_for("auto", "sleep", identity), Limits())
    assert caught.value.errno == errno.EBUSY


def test_controllers_the_root_does_not_offer_fail_clearly_and_create_nothing(tmp_path):
    """The shape of this machine's real v2 mount: the daemon in the root, no cpu or memory."""
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    files = FakeCgroupV2Files(root, proc)
    files.make_root("hugetlb")
    files.put_process(os.getpid(), root)
    governor = create_governor(root, proc_root=proc, files=files)

    problem = governor.check()

    assert problem == (
        f"cgroup v2 controllers cpu, memory are not available in {root} "
        "(its cgroup.controllers lists hugetlb)"
    )
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == []
    assert (root / "cgroup.subtree_control").read_text() == "\n"


def test_a_parent_above_the_delegated_cgroup_is_never_enabled_by_us(tmp_path):
    machine = build_machine(tmp_path)
    (machine.root / "system.slice" / "cgroup.subtree_control").write_text("cpu io\n")
    governor = machine.governor(parent="/system.slice/jobs")

    problem = governor.check()

    assert problem is not None and "not enabled in" in problem
    assert (machine.root / "system.slice" / "cgroup.subtree_control").read_text() == "cpu io\n"
    assert not (machine.root / "system.slice" / "jobs").exists()


def test_an_absolute_operator_parent_is_taken_from_the_root(machine, sleeper):
    governor = machine.governor(parent="/transcode")
    job_id = job_id_for("auto", "sleep", sleeper)

    assert governor.check() is None
    governor.attach(sleeper, job_id, Limits(25))

    assert governor.parents == (machine.root / "transcode",)
    assert (machine.root / "transcode" / "cgroup.subtree_control").read_text() == "cpu memory\n"
    assert (machine.root / "transcode" / job_id / "cpu.max").read_text() == "25000 100000\n"


def test_a_relative_operator_parent_is_taken_from_the_anchor(machine):
    governor = machine.governor(parent="media/jobs")

    assert governor.check() is None
    assert governor.parents == (machine.service / "media" / "jobs",)
    assert (machine.service / "media" / "cgroup.subtree_control").read_text() == "cpu memory\n"


def test_bad_parent_is_refused_in_one_sentence(machine):
    with pytest.raises(ValueError, match=r"cgroup parent '\.\./x' must name a cgroup"):
        machine.governor(parent="../x")


def test_usage_reads_the_counters_and_a_missing_peak_is_none(machine, sleeper):
    governor = machine.governor()
    job_id = job_id_for("auto", "sleep", sleeper)
    job = machine.service / "ffrtmp" / job_id
    governor.attach(sleeper, job_id, Limits(100))
    # What the kernel would have counted; a fake can only be told.
    (job / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    (job / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    machine.files.exit_process(sleeper.pid)

    assert governor.usage(job_id) == Usage(None, 2.5, True)
    (job / "memory.peak").write_text("73400320\n")
    assert governor.usage(job_id).peak_memory_bytes == 73400320


def test_release_keeps_a_populated_cgroup_and_removes_an_empty_one(machine, sleeper):
    governor = machine.governor()
    job_id = job_id_for("auto", "sleep", sleeper)
    job = machine.service / "ffrtmp" / job_id
    governor.attach(sleeper, job_id, Limits())

    assert governor.release(job_id) is False
    assert job.is_dir()
    machine.files.exit_process(sleeper.pid)
    assert governor.release(job_id) is True
    assert not job.exists()
    assert (machine.service / "ffrtmp").is_dir()
    assert governor.release(job_id) is True  # already gone is gone


def cgroup_removed_details(store, process_id: int) -> list[dict]:
    with store.unit() as s:
        return list(
            s.scalars(
                select(ProcessEvent.details).where(
                    ProcessEvent.process_id == process_id,
                    ProcessEvent.kind == EventKind.CGROUP_REMOVED,
                )
            )
        )


def test_removing_the_cgroup_of_an_ended_process_is_recorded_once_it_is_empty(
    machine, sleeper, store
):
    governor = machine.governor()
    job_id = job_id_for("auto", "sleep", sleeper)
    job = machine.service / "ffrtmp" / job_id
    candidate = make_candidate(
        identity=sleeper, command="sleep", argv=("sleep", "60"), ppid=os.getpid()
    )
    process_id, _ = store.register(candidate, job_id=job_id, limits=Limits(), now=utc(time.time()))
    attacher = Attacher(store, governor, BackoffPolicy(), retry_enabled=False)
    attached = attacher.attach(process_id, sleeper, job_id, Limits(), now=system_now())
    assert attached.state == ProcessState.ATTACHED
    lifecycle = Lifecycle(store, governor)
    lifecycle.follow(Followed(process_id, sleeper, job_id, governed=True))

    os.kill(sleeper.pid, signal.SIGKILL)
    wait_until(lambda: not sleeper.is_running(), timeout=STATE_TIMEOUT_S, what="the sleeper to die")
    lifecycle.poll(system_now())
    # The fake, unlike the kernel, keeps a pid in cgroup.procs until told: still populated.
    with store.unit() as s:
        assert s.get(Process, process_id).state == ProcessState.EXITED
    assert job.is_dir()
    assert cgroup_removed_details(store, process_id) == []

    machine.files.exit_process(sleeper.pid)
    failpoints.configure("store.commit=EIO*1")
    lifecycle.poll(system_now())
    assert not job.exists()
    assert cgroup_removed_details(store, process_id) == []  # its commit failed: kept for later

    lifecycle.poll(system_now())
    assert cgroup_removed_details(store, process_id) == [{"job_id": job_id, "cgroups": [str(job)]}]
    lifecycle.poll(system_now())
    assert len(cgroup_removed_details(store, process_id)) == 1


def test_leftovers_lists_only_the_names_ffrtmp_generates(machine):
    governor = machine.governor()
    assert governor.check() is None
    parent = machine.service / "ffrtmp"
    for name in ("auto-ffmpeg-4242-100", "manual-gst-launch-1.0-7-8", "payments", "job-1"):
        machine.files.mkdir(parent / name)
    machine.files.put_process(4242, parent / "auto-ffmpeg-4242-100")
    machine.files.put_process(4243, parent / "payments")

    assert governor.leftovers() == {"auto-ffmpeg-4242-100": [4242], "manual-gst-launch-1.0-7-8": []}
    with pytest.raises(ValueError, match="is not one ffrtmp generates"):
        governor.release("payments")
    assert governor.release("manual-gst-launch-1.0-7-8") is True
    assert sorted(p.name for p in parent.iterdir() if p.is_dir()) == [
        "auto-ffmpeg-4242-100",
        "job-1",
        "payments",
    ]


def test_job_id_holds_pid_and_start_ticks_and_only_safe_characters():
    identity = ProcessIdentity("boot", 1234, 987654)

    assert job_id_for("auto", "ffmpeg", identity) == "auto-ffmpeg-1234-987654"
    assert (
        job_id_for("manual", "gst launch/1.0;x", identity) == "manual-gst_launch_1.0_x-1234-987654"
    )
    assert job_id_for("auto", "", identity) == "auto-unknown-1234-987654"
    assert len(job_id_for("auto", "x" * 500, identity)) < 100
    with pytest.raises(ValueError, match="job id prefix must be one of auto, manual, run"):
        job_id_for("job", "ffmpeg", identity)


def test_no_cgroup_filesystem_is_reported_by_check(tmp_path):
    governor = create_governor(tmp_path, proc_root=tmp_path)

    assert governor.check() == (
        f"{tmp_path} is neither a cgroup v2 mount (it has no cgroup.controllers) "
        "nor a directory of cgroup v1 cpu and memory hierarchies"
    )
    with pytest.raises(ValueError, match="cgroup version must be 1 or 2, not 3"):
        create_governor(tmp_path, version=3)


class KernelIgnoringMemoryMax(FakeCgroupV2Files):
    """A kernel that accepts the write to memory.max but keeps its old value."""

    def write(self, path: Path, text: str) -> None:
        if path.name == "memory.max":
            self.written_since_mkdir.setdefault(path.parent, []).append(path.name)
            return
        super().write(path, text)


def test_a_limit_that_does_not_read_back_fails_the_attach_before_the_move(tmp_path, sleeper):
    machine = build_machine(tmp_path / "other")
    files = KernelIgnoringMemoryMax(machine.root, machine.proc)
    governor = create_governor(machine.root, proc_root=machine.proc, files=files)
    job_id = job_id_for("auto", "sleep", sleeper)
    files.put_process(sleeper.pid, machine.root / "system.slice" / "other.service")

    with pytest.raises(GovernorError) as caught:
        governor.attach(sleeper, job_id, Limits(memory_limit_mb=64))

    assert caught.value.errno == errno.EIO
    assert str(caught.value) == (
        f"{machine.service / 'ffrtmp' / job_id / 'memory.max'} reads back as 'max' "
        f"after '{64 * 1024 * 1024}' was written"
    )
    assert not (machine.service / "ffrtmp" / job_id).exists()
    assert files.pids(machine.root / "system.slice" / "other.service") == [sleeper.pid]
