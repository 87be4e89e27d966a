"""Memory a process held before its attach: moved into its job cgroup where the kernel can
(cgroup v1 `memory.move_charge_at_immigrate`), said to stay behind where it cannot (cgroup v2;
v1 kernels that removed charge moving), and the process's own high-water resident size
(VmHWM) recorded beside the job cgroup's peak, each labelled in `processes show`.

Real processes that touch their memory before the daemon sees them, real cgroups (v1 here, v2
in the VM of `make test-v2`), a real database.
"""

from __future__ import annotations

import errno
import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from cgroup_hierarchy import CgroupHierarchy, JobCgroups
from click.testing import CliRunner
from daemon_harness import close, make_daemon, pump, query, write_config
from helpers_processes import ProcessSpawner

from ffrtmp.candidate import Candidate
from ffrtmp.cgroups import CgroupFiles, create_governor, job_id_for
from ffrtmp.cgroups.live import LiveUsage
from ffrtmp.cli import main
from ffrtmp.identity import ProcessIdentity, boot_id, current_identity
from ffrtmp.limits import Limits
from ffrtmp.utctime import utc

MIB = 1024 * 1024
# A real interpreter (not the pyenv shim), so that argv[0] names the process.
PYTHON = str(Path("/usr/bin/python3").resolve())
BEFORE_MIB = 96  # touched before the attach
LATER_MIB = 64  # touched after it, on a line on stdin
HOLDER = (
    "import sys\n"
    f"held = [bytearray({BEFORE_MIB} << 20)]\n"
    "print('ready', flush=True)\n"
    "sys.stdin.readline()\n"
    f"held.append(bytearray({LATER_MIB} << 20))\n"
    "print('more', flush=True)\n"
    "sys.stdin.readline()\n"
)


def kernel_moves_charges(hierarchy: CgroupHierarchy) -> bool:
    """Whether this kernel takes memory.move_charge_at_immigrate, asked of a scratch cgroup of
    the test's own (v2 has no such file: False)."""
    if hierarchy.version != 1:
        return False
    scratch = hierarchy.by_controller["memory"].directory / f"ffrtmp-probe-{uuid.uuid4().hex[:8]}"
    scratch.mkdir()
    try:
        (scratch / "memory.move_charge_at_immigrate").write_text("1")
        return True
    except OSError as err:
        assert err.errno == errno.EINVAL, err
        return False
    finally:
        scratch.rmdir()


def start_holder(spawn: ProcessSpawner, token: str) -> subprocess.Popen:
    holder = spawn(
        ["memhold", "-c", HOLDER, token],
        executable=PYTHON,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert holder.stdout.readline() == b"ready\n"
    return holder


def step(holder: subprocess.Popen, expect: bytes) -> None:
    holder.stdin.write(b"go\n")
    holder.stdin.flush()
    assert holder.stdout.readline() == expect


def charged_now(hierarchy: CgroupHierarchy, directories: list[Path]) -> int:
    name = "memory.usage_in_bytes" if hierarchy.version == 1 else "memory.current"
    (value,) = [int((d / name).read_text()) for d in directories if (d / name).is_file()]
    return value


class RecordingFiles(CgroupFiles):
    """The real cgroupfs, with every write remembered in order: the order of two writes is
    not visible in the files afterwards."""

    def __init__(self) -> None:
        self.writes: list[tuple[Path, str]] = []

    def write(self, path: Path, text: str) -> None:
        self.writes.append((path, text))
        super().write(path, text)


@pytest.mark.vm
def test_the_charge_is_asked_to_move_before_the_pid_and_the_attachment_says_what_the_kernel_did(
    spawn, cgroup_hierarchy: CgroupHierarchy, real_cgroup_parent: str
):
    holder = start_holder(spawn, "direct")
    identity = current_identity(holder.pid)
    files = RecordingFiles()
    governor = create_governor(parent=real_cgroup_parent, files=files)
    job_id = job_id_for("manual", "memhold", identity)

    attachment = governor.attach(identity, job_id, Limits())

    moves = kernel_moves_charges(cgroup_hierarchy)
    assert attachment.memory_charge_moved is moves
    directories = [Path(p) for p in attachment.cgroup_paths]
    charged = charged_now(cgroup_hierarchy, directories)
    if moves:
        assert charged >= BEFORE_MIB * MIB
    else:
        assert charged < BEFORE_MIB * MIB // 2  # what it held stayed where it was
    if cgroup_hierarchy.version == 1:
        names = [(path.parent.name, path.name) for path, _ in files.writes]
        memory_dir = next(d for d in directories if (d / "memory.limit_in_bytes").is_file())
        move = names.index((job_id, "memory.move_charge_at_immigrate"))
        procs = files.writes.index((memory_dir / "cgroup.procs", str(holder.pid)))
        assert move < procs
        held = (memory_dir / "memory.move_charge_at_immigrate").read_text().strip()
        assert held == ("1" if moves else "0")


@pytest.mark.vm
def test_the_row_keeps_the_process_peak_beside_the_cgroup_peak_and_show_labels_both(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups
):
    token = f"memhold-{uuid.uuid4().hex}"
    config = write_config(
        tmp_path, PYTHON, "scan_interval: 500ms\n", command="memhold", cmdline_regex=token
    )
    daemon = make_daemon(db_path, config, job_cgroups.parent, events=False)
    try:
        daemon.start(daemon.clock.now())
        holder = start_holder(spawn, token)  # its memory is touched before any scan sees it

        def row(columns: str) -> tuple:
            rows = query(db_path, f"SELECT {columns} FROM processes WHERE pid = ?", (holder.pid,))
            return rows[0] if rows else ()

        pump(daemon, lambda: row("state") == ("attached",), what="the holder attached")
        moves = kernel_moves_charges(job_cgroups.hierarchy)
        at_attach, moved = row("process_peak_rss_bytes, memory_charge_moved")
        assert at_attach >= BEFORE_MIB * MIB
        assert bool(moved) is moves

        step(holder, b"more\n")
        daemon.usage.sample(daemon.clock.now())
        process_peak, cgroup_peak = row("process_peak_rss_bytes, peak_memory_bytes")
        assert process_peak >= (BEFORE_MIB + LATER_MIB) * MIB
        if cgroup_peak is not None:  # v2 kernels before 5.19 have no memory.peak
            assert cgroup_peak >= LATER_MIB * MIB
            if not moves:
                assert cgroup_peak < process_peak - BEFORE_MIB * MIB // 2

        shown = CliRunner().invoke(
            main, ["processes", "show", "--pid", str(holder.pid), "--json", "--db", str(db_path)]
        )
        assert shown.exit_code == 0, shown.output
        memory = json.loads(shown.output)["memory"]
        assert memory["process_peak_rss_bytes"] == process_peak
        assert memory["cgroup_peak_bytes"] == cgroup_peak
        assert "VmHWM" in memory["process_peak_rss_is"]
        assert "from the attach on" in memory["cgroup_peak_is"]
        if moves:
            assert memory["charged_before_attach"].startswith("moved into the job cgroup")
        elif job_cgroups.version == 2:
            assert "cgroup v2 cannot move charges" in memory["charged_before_attach"]
        else:
            assert "this kernel refused" in memory["charged_before_attach"]

        people = CliRunner().invoke(
            main, ["processes", "show", "--pid", str(holder.pid), "--db", str(db_path)]
        )
        assert people.exit_code == 0, people.output
        assert "\nmemory\n" in people.output
        assert "process_peak_rss_bytes" in people.output
    finally:
        close(daemon)


def test_a_sample_without_a_process_peak_keeps_the_last_one(store, db_path):
    """An exited process has no VmHWM any more: a sample that finds none keeps the figure."""
    identity = ProcessIdentity(boot_id(), 4_000_001, 12345)  # a row only, no process needed
    candidate = Candidate(identity, "memhold", ("memhold",), ppid=1, rule="memhold")
    now = utc(time.time())
    process_id, _ = store.register(candidate, job_id="manual-memhold-1", limits=Limits(), now=now)
    usage = LiveUsage(None, None, None, None, None, None)

    store.record_usage([(process_id, usage)], now=now, process_peaks={process_id: 5 * MIB})
    store.record_usage([(process_id, usage)], now=now)

    assert query(db_path, "SELECT process_peak_rss_bytes FROM processes") == [(5 * MIB,)]
