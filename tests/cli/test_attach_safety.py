"""`ffrtmp attach` cannot hurt the machine, and `ffrtmp release` undoes it: real processes, real
cgroups below the test's own, real `ffrtmp` commands."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from candidates import make_candidate
from cgroup_hierarchy import JobCgroups, read_memberships
from daemon_harness import query, write_config
from ffrtmp_commands import ffrtmp

from ffrtmp.attach_safety import PF_KTHREAD


def attach(db_path, parent, pid, *extra) -> subprocess.CompletedProcess:
    return ffrtmp("attach", "--pid", pid, "--db", db_path, "--cgroup-parent", parent, *extra)


def a_kernel_thread() -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_bytes()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2 :].split()
        if int(fields[6]) & PF_KTHREAD:
            return int(entry.name)
    return None


def test_pid_1_is_refused_and_nothing_is_written(db_path, real_cgroup_parent):
    before = read_memberships(1)
    result = attach(db_path, real_cgroup_parent, 1, "--force")
    assert result.returncode == 1
    assert result.stderr == "Error: pid 1 is init: ffrtmp never moves it into a job cgroup\n"
    assert read_memberships(1) == before
    assert not db_path.exists()


def test_a_kernel_thread_is_refused(db_path, real_cgroup_parent):
    pid = a_kernel_thread()
    if pid is None:
        pytest.skip("no kernel thread is visible in this pid namespace")
    result = attach(db_path, real_cgroup_parent, pid, "--force")
    assert result.returncode == 1
    assert result.stderr == f"Error: pid {pid} is a kernel thread: it cannot be governed\n"
    assert not db_path.exists()


def test_an_ancestor_of_ffrtmp_is_refused(db_path, real_cgroup_parent):
    """This test process is the parent of the `ffrtmp attach` it runs."""
    before = read_memberships(os.getpid())
    result = attach(db_path, real_cgroup_parent, os.getpid(), "--force")
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: pid {os.getpid()} is an ancestor of this ffrtmp")
    assert read_memberships(os.getpid()) == before
    assert not db_path.exists()


def test_a_non_target_command_needs_force(db_path, spawn, job_cgroups: JobCgroups):
    sleeper = spawn(["sleep", "60"])
    refused = attach(db_path, job_cgroups.parent, sleeper.pid)
    assert refused.returncode == 1
    assert refused.stderr == (
        f"Error: pid {sleeper.pid} runs 'sleep', which is not a target command (ffmpeg, "
        "gst-launch-1.0); add --force to govern it all the same\n"
    )
    assert job_cgroups.job_of(sleeper.pid) is None
    forced = attach(db_path, job_cgroups.parent, sleeper.pid, "--force")
    assert forced.returncode == 0, forced.stderr
    assert job_cgroups.job_of(sleeper.pid) is not None


@pytest.mark.vm
def test_another_services_process_needs_force_and_release_puts_it_back(
    db_path, spawn, job_cgroups: JobCgroups, named_ffmpeg
):
    service = job_cgroups.parent_directory() / "other.service"
    service.mkdir(parents=True)
    child = spawn([named_ffmpeg, "600"])  # a target: only the service check refuses it
    (service / "cgroup.procs").write_text(str(child.pid))
    origin = read_memberships(child.pid)

    refused = attach(db_path, job_cgroups.parent, child.pid)
    assert refused.returncode == 1
    assert f"pid {child.pid} belongs to the service other.service" in refused.stderr
    assert read_memberships(child.pid) == origin

    forced = attach(db_path, job_cgroups.parent, child.pid, "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    job_id = json.loads(forced.stdout)["job_id"]
    assert job_cgroups.job_of(child.pid) == job_id
    ((recorded,),) = query(db_path, "SELECT origin_cgroups FROM processes")
    assert any(path.endswith("/other.service") for path in json.loads(recorded).values())

    released = ffrtmp("release", "--pid", child.pid, "--db", db_path)
    assert released.returncode == 0, released.stderr
    assert read_memberships(child.pid) == origin
    assert job_cgroups.names() == ["other.service"]  # the job cgroup is gone
    assert query(db_path, "SELECT state FROM processes") == [("released",)]
    kinds = [k for (k,) in query(db_path, "SELECT kind FROM process_events ORDER BY id")]
    assert kinds[-1] == "released"
    assert child.poll() is None

    again = ffrtmp("release", "--pid", child.pid, "--db", db_path)
    assert again.returncode == 1
    assert again.stderr == (
        f"Error: pid {child.pid} is not a running process that ffrtmp governs\n"
    )


@pytest.mark.vm
def test_a_released_process_is_no_longer_followed_by_the_daemon(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder, daemons
):
    daemon = daemons(db_path, write_config(tmp_path, transcoder), job_cgroups.parent, events=False)
    now = daemon_start(daemon)
    child = spawn([transcoder, "600"])
    before = read_memberships(child.pid)
    daemon.full_scan(now)
    ((job_id, state),) = query(db_path, "SELECT job_id, state FROM processes")
    assert (state, job_cgroups.job_of(child.pid)) == ("attached", job_id)

    released = ffrtmp("release", "--job", job_id, "--db", db_path)
    assert released.returncode == 0, released.stderr
    assert read_memberships(child.pid) == before
    daemon.full_scan(now + 20)
    assert child.pid not in daemon.lifecycle.by_pid
    child.kill()
    child.wait()
    daemon.full_scan(now + 40)
    # Not followed: its end is not recorded, it stays released, nothing attached it again.
    assert query(db_path, "SELECT state, exited_at FROM processes") == [("released", None)]
    assert job_cgroups.names() == []


def test_a_process_the_daemon_skipped_can_be_attached(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, named_ffmpeg, daemons
):
    # A default target's name: `attach` without --force takes only those.
    workdir = tmp_path / "blocked"
    workdir.mkdir()
    blocked = f"filters:\n  blocked_dirs: ['{workdir}']\n"
    config = write_config(tmp_path, named_ffmpeg, blocked, command="ffmpeg")
    daemon = daemons(db_path, config, job_cgroups.parent, events=False)
    now = daemon_start(daemon)
    child = spawn([named_ffmpeg, "600"], cwd=workdir)
    daemon.full_scan(now)
    ((process_id, state),) = query(db_path, "SELECT id, state FROM processes")
    assert state == "skipped"

    result = attach(db_path, job_cgroups.parent, child.pid)

    assert result.returncode == 0, result.stderr
    ((same_id, state, job_id),) = query(db_path, "SELECT id, state, job_id FROM processes")
    assert (same_id, state) == (process_id, "attached")
    assert job_cgroups.job_of(child.pid) == job_id
    daemon.full_scan(now + 20)  # the daemon follows it now, and attaches nothing twice
    assert daemon.lifecycle.followed_ids() == [process_id]


def daemon_start(daemon):
    now = daemon.clock.now()
    daemon.start(now)
    return now


def test_the_daemons_own_attach_path_never_moves_init(store, job_cgroups: JobCgroups):
    """A row for pid 1 (say, written by an older ffrtmp that let `attach --pid 1` through)
    must not be attached again by a recovery or a retry."""
    from datetime import UTC, datetime

    from ffrtmp.attach import Attacher
    from ffrtmp.backoff import BackoffPolicy
    from ffrtmp.cgroups import create_governor
    from ffrtmp.clock import Moment
    from ffrtmp.identity import current_identity
    from ffrtmp.limits import Limits

    init = current_identity(1)
    before = read_memberships(1)
    candidate = make_candidate(identity=init, command="init", argv=("init",), ppid=0, rule="manual")
    process_id, _ = store.register(
        candidate, job_id="manual-init-1-1", limits=Limits(), now=datetime.now(UTC)
    )
    attacher = Attacher(
        store, create_governor(parent=job_cgroups.parent), BackoffPolicy(), retry_enabled=False
    )

    result = attacher.attach(process_id, init, "manual-init-1-1", Limits(), now=Moment(0.0, 0.0))

    assert result.state == "observed"
    assert read_memberships(1) == before
    assert job_cgroups.names() == []
    with store.reading() as s:
        from ffrtmp.models import Process

        row = s.get(Process, process_id)
        assert (row.state, row.state_reason) == (
            "observed",
            "pid 1 is init: ffrtmp never moves it into a job cgroup",
        )


def test_service_of_names_the_service_and_not_a_job_cgroup_of_ffrtmp():
    from ffrtmp.attach_safety import service_of

    assert service_of(["/system.slice/transcoder.service"]) == "transcoder.service"
    assert service_of(["/system.slice/x.service/worker"]) == "x.service"
    assert service_of(["/user.slice/user-1000.slice/session-3.scope"]) is None
    job = "/system.slice/ffrtmp-watch.service/auto-ffmpeg-4242-123456"
    assert service_of([job]) is None
