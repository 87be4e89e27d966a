"""The daemon end to end in one process: real processes, real cgroups below the test's own
(v1 on the host; v2 in the VM of `make test-v2`, for the tests marked vm), a real SQLite file,
the kernel's process events.

The tests marked vm are the ones that show what a hierarchy changes: discovery, limits read
back, exit code and signal, the OOM kill, retries and dead letters, restart recovery and cgroup
removal. The VM's CPU is emulated: every wait there is on a state, with a generous bound.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from cgroup_hierarchy import JobCgroups
from daemon_harness import (
    cgroup_of,
    is_zombie_or_gone,
    pump,
    query,
    write_config,
)
from helpers_processes import STATE_TIMEOUT_S, TEST_TARGET, wait_until

from ffrtmp import failpoints
from ffrtmp.cgroups import create_governor
from ffrtmp.identity import ProcessIdentity, current_identity


def process_row(db_path, pid):
    rows = query(
        db_path,
        "SELECT id, state, exit_code, exit_signal, exit_reason, job_id, cgroup_paths, "
        "applied_cpu_quota, applied_cpu_weight, applied_memory_limit_mb FROM processes "
        "WHERE pid = ?",
        (pid,),
    )
    assert len(rows) <= 1, f"pid {pid} has {len(rows)} rows"
    return rows[0] if rows else None


def state_of(db_path, pid) -> str | None:
    row = process_row(db_path, pid)
    return None if row is None else row[1]


def event_kinds(db_path, process_id: int) -> list[str]:
    sql = "SELECT kind FROM process_events WHERE process_id = ? ORDER BY id"
    return [kind for (kind,) in query(db_path, sql, (process_id,))]


@pytest.fixture
def fake_dash(tmp_path):
    """A copy of the shell named as the suite's target, for processes that must exit with a
    chosen code."""
    target = tmp_path / "shbin" / TEST_TARGET
    target.parent.mkdir()
    shutil.copy(shutil.which("dash") or "/bin/sh", target)
    return target


@pytest.mark.vm
def test_fake_ffmpeg_is_attached_with_its_limits_and_its_kill_recorded(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder, daemons
):
    config = write_config(tmp_path, transcoder)
    daemon = daemons(
        db_path, config, job_cgroups.parent, cpu_quota=50, cpu_weight=200, memory_limit=64
    )
    daemon.start(daemon.clock.now())
    child = spawn([transcoder, "30"])
    pump(daemon, lambda: state_of(db_path, child.pid) == "attached", what="attach")
    row = process_row(db_path, child.pid)
    job = row[5]
    assert row[7:] == (50.0, 200, 64)
    assert job_cgroups.job_of(child.pid) == job
    assert job_cgroups.limits(job) == (50.0, 200, 64)
    assert job_cgroups.pids(job) == {child.pid}
    directories = job_cgroups.directories(job)
    assert sorted(json.loads(row[6])) == sorted(map(str, directories))
    # The parent holds job cgroups only, never a process: on v2 it could not enable the
    # controllers its job cgroups need otherwise. And it enables only those.
    assert job_cgroups.parent_pids() == set()
    if job_cgroups.version == 2:
        assert job_cgroups.subtree_control() == {"cpu", "memory"}

    os.kill(child.pid, signal.SIGKILL)
    pump(daemon, lambda: state_of(db_path, child.pid) == "exited", what="exit")
    row = process_row(db_path, child.pid)
    assert (row[2], row[3], row[4]) == (None, 9, None)
    # Its usage, read from the job cgroup before the cgroup was removed.
    ((cpu_seconds, peak, oom_killed),) = query(
        db_path, "SELECT cpu_seconds, peak_memory_bytes, oom_killed FROM processes"
    )
    assert cpu_seconds is not None and cpu_seconds >= 0
    assert oom_killed == 0
    assert (peak is not None) == job_cgroups.counts_peak_memory()
    assert not any(directory.exists() for directory in directories)
    assert job_cgroups.names() == []
    kinds = event_kinds(db_path, row[0])
    assert kinds == ["discovered", "limits_applied", "exited", "cgroup_removed"]


HUNGRY = "import sys; sys.stdin.readline(); data = b'x' * (256 << 20); sys.stdin.readline()"


@pytest.mark.vm
def test_a_process_over_its_memory_limit_is_oom_killed_and_the_kill_recorded(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, daemons
):
    if Path("/proc/swaps").read_text().count("\n") > 1:
        pytest.skip("with swap the process would swap instead of being killed")
    # A real interpreter that allocates past its limit once told to, after it is attached
    # (memory charged before the move stays with its old cgroup). Python is shared by every
    # test: the rule matches this test's marker in the command line too.
    marker = f"oom-{uuid.uuid4().hex[:12]}"
    config = write_config(
        tmp_path,
        os.path.realpath(sys.executable),
        command=os.path.basename(sys.executable),
        cmdline_regex=marker,
    )
    limit_mb = 32
    daemon = daemons(db_path, config, job_cgroups.parent, memory_limit=limit_mb)
    daemon.start(daemon.clock.now())
    child = spawn([sys.executable, "-c", HUNGRY, marker], stdin=subprocess.PIPE)
    pump(daemon, lambda: state_of(db_path, child.pid) == "attached", what="attach")
    job = process_row(db_path, child.pid)[5]
    assert job_cgroups.memory_limit_mb(job) == limit_mb
    assert job_cgroups.oom_kills(job) == 0

    child.stdin.write(b"allocate\n")
    child.stdin.flush()
    pump(daemon, lambda: state_of(db_path, child.pid) == "exited", what="the OOM kill")

    assert child.wait(timeout=STATE_TIMEOUT_S) == -signal.SIGKILL
    ((process_id, code, signo, oom_killed, peak),) = query(
        db_path,
        "SELECT id, exit_code, exit_signal, oom_killed, peak_memory_bytes FROM processes",
    )
    assert (code, signo, oom_killed) == (None, signal.SIGKILL, 1)
    assert "oom_killed" in event_kinds(db_path, process_id)
    # The peak is the kernel's (v1 memory.max_usage_in_bytes, v2 memory.peak from 5.19):
    # recorded where it keeps one, and never above the limit.
    if job_cgroups.counts_peak_memory():
        assert peak is not None and 0 < peak <= limit_mb * 1024 * 1024
    else:
        assert peak is None
    assert job_cgroups.names() == []  # its emptied job cgroup removed after the read


def cgroup_removed_details(db_path, process_id: int) -> list[dict]:
    sql = "SELECT details FROM process_events WHERE process_id = ? AND kind = 'cgroup_removed'"
    rows = query(db_path, sql, (process_id,))
    return [json.loads(details) for (details,) in rows]


@pytest.mark.vm
def test_the_removal_of_an_ended_process_cgroups_is_recorded_with_their_paths(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder, daemons
):
    daemon = daemons(db_path, write_config(tmp_path, transcoder), job_cgroups.parent)
    daemon.start(daemon.clock.now())
    child = spawn([transcoder, "30"])
    pump(daemon, lambda: state_of(db_path, child.pid) == "attached", what="attach")
    row = process_row(db_path, child.pid)
    process_id, job_id, cgroups = row[0], row[5], json.loads(row[6])
    assert sorted(cgroups) == sorted(map(str, job_cgroups.directories(job_id)))
    assert all(os.path.isdir(path) for path in cgroups)
    assert cgroup_removed_details(db_path, process_id) == []

    os.kill(child.pid, signal.SIGKILL)
    pump(daemon, lambda: cgroup_removed_details(db_path, process_id), what="cgroup_removed")

    removed = cgroup_removed_details(db_path, process_id)
    assert removed == [{"job_id": job_id, "cgroups": cgroups}]
    assert not any(os.path.exists(path) for path in cgroups)
    assert process_row(db_path, child.pid)[1] == "exited"


@pytest.mark.vm
def test_exit_code_3_is_recorded_from_the_kernel_event(
    tmp_path, db_path, spawn, real_cgroup_parent, fake_dash, daemons
):
    daemon = daemons(db_path, write_config(tmp_path, fake_dash), real_cgroup_parent)
    daemon.start(daemon.clock.now())
    child = spawn([fake_dash, "-c", "sleep 0.5; exit 3"])
    pump(daemon, lambda: state_of(db_path, child.pid) == "exited", what="exit")
    row = process_row(db_path, child.pid)
    assert (row[2], row[3]) == (3, None)
    assert query(db_path, "SELECT attached_at IS NOT NULL FROM processes") == [(1,)]


@pytest.mark.vm
def test_without_events_a_zombie_gives_the_exit_code(
    tmp_path, db_path, spawn, real_cgroup_parent, fake_dash, daemons
):
    daemon = daemons(
        db_path,
        write_config(tmp_path, fake_dash),
        real_cgroup_parent,
        events=False,
        scan_interval="100ms",
    )
    daemon.start(daemon.clock.now())
    child = spawn([fake_dash, "-c", "sleep 0.4; exit 7"])
    pump(daemon, lambda: state_of(db_path, child.pid) == "attached")
    # We are its parent and do not reap it yet: it stays a zombie for the poll to read.
    wait_until(lambda: is_zombie_or_gone(child.pid), STATE_TIMEOUT_S, "the child's exit")
    pump(daemon, lambda: process_row(db_path, child.pid)[1] == "exited")
    assert process_row(db_path, child.pid)[2:5] == (7, None, None)


def test_without_events_a_reaped_process_is_recorded_with_null_and_the_reason(
    tmp_path, db_path, spawn, real_cgroup_parent, transcoder, daemons
):
    daemon = daemons(
        db_path,
        write_config(tmp_path, transcoder),
        real_cgroup_parent,
        events=False,
        scan_interval="100ms",
    )
    daemon.start(daemon.clock.now())
    child = spawn([transcoder, "30"])
    pump(daemon, lambda: state_of(db_path, child.pid) == "attached")
    child.kill()
    child.wait()
    pump(daemon, lambda: process_row(db_path, child.pid)[1] == "exited")
    code, signo, reason = process_row(db_path, child.pid)[2:5]
    assert (code, signo) == (None, None)
    assert "reaped by its parent" in reason


@pytest.mark.vm
def test_non_matching_process_is_not_touched(
    tmp_path, db_path, spawn, real_cgroup_parent, transcoder, daemons
):
    daemon = daemons(db_path, write_config(tmp_path, transcoder), real_cgroup_parent)
    daemon.start(daemon.clock.now())
    other = spawn(["sleep", "30"])
    before = cgroup_of(other.pid)
    daemon.full_scan(daemon.clock.now())
    assert cgroup_of(other.pid) == before
    assert query(db_path, "SELECT count(*) FROM processes") == [(0,)]


@pytest.mark.vm
def test_a_pid_now_owned_by_another_process_is_not_touched_by_a_retry(
    tmp_path, db_path, spawn, real_cgroup_parent, transcoder, daemons
):
    """The retry item names (pid, old start time); the pid now belongs to a non-matching
    `sleep`. Forcing the kernel to recycle a pid on demand is not possible, so the old
    identity is the live pid with an earlier start tick: exactly what a recycled pid looks like."""
    failpoints.configure("governor.attach=EBUSY*1")
    daemon = daemons(db_path, write_config(tmp_path, transcoder), real_cgroup_parent, events=False)
    now = daemon.clock.now()
    daemon.start(now)
    ffmpeg = spawn([transcoder, "30"])
    daemon.full_scan(now)
    assert process_row(db_path, ffmpeg.pid)[1] == "retrying"
    stranger = spawn(["sleep", "30"])
    live = current_identity(stranger.pid)
    old = ProcessIdentity(live.boot_id, live.pid, live.start_ticks - 1)
    process_id = process_row(db_path, ffmpeg.pid)[0]
    # Point the recorded process at the stranger's pid with the old start time.
    query_sql = "UPDATE processes SET pid = ?, start_ticks = ? WHERE id = ?"
    with daemon.store.engine.begin() as conn:
        conn.exec_driver_sql(query_sql, (old.pid, old.start_ticks, process_id))
    before = cgroup_of(stranger.pid)
    daemon.lifecycle.by_pid.clear()
    daemon.retries.run_due(now + 60)
    assert cgroup_of(stranger.pid) == before
    assert query(db_path, "SELECT state, final_reason FROM retry_items") == [
        ("cancelled", "pid_reused")
    ]


@pytest.mark.vm
def test_failed_attaches_are_retried_then_dead_lettered(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder, daemons
):
    failpoints.configure("governor.attach=EBUSY*inf")
    daemon = daemons(
        db_path,
        write_config(tmp_path, transcoder),
        job_cgroups.parent,
        events=False,
        max_retry_attempts=3,
    )
    now = daemon.clock.now()
    daemon.start(now)
    child = spawn([transcoder, "30"])
    daemon.full_scan(now)
    assert query(db_path, "SELECT state, attempt FROM retry_items") == [("pending", 0)]
    for expected_attempt in (1, 2, 3):
        now += 400  # past any backoff
        daemon.step(now)
        ((state, attempt),) = query(db_path, "SELECT state, attempt FROM retry_items")
        assert attempt == expected_attempt
    assert state == "dead"
    assert process_row(db_path, child.pid)[1] == "dead"
    errors = query(db_path, "SELECT operation, error_type, errno_name, retryable FROM error_events")
    assert errors == [("attach", "transient", "EBUSY", 1)] * 4
    # Left where it was, running (nothing wrote cgroup.kill), and every failed attempt
    # removed the job cgroup it had made.
    assert cgroup_of(child.pid) == cgroup_of(os.getpid())
    assert child.poll() is None
    assert job_cgroups.names() == []


@pytest.mark.vm
def test_retry_succeeds_after_transient_failures(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder, daemons
):
    failpoints.configure("governor.attach=EAGAIN*2")
    daemon = daemons(db_path, write_config(tmp_path, transcoder), job_cgroups.parent, events=False)
    now = daemon.clock.now()
    daemon.start(now)
    child = spawn([transcoder, "30"])
    daemon.full_scan(now)
    next_at = query(db_path, "SELECT next_attempt_at FROM retry_items")[0][0]
    assert next_at is not None
    daemon.step(now + 0.5)  # not due yet (1 s initial backoff, jitter 10 %)
    assert query(db_path, "SELECT attempt FROM retry_items") == [(0,)]
    daemon.step(now + 5)
    daemon.step(now + 20)
    assert query(db_path, "SELECT state, attempt FROM retry_items") == [("succeeded", 2)]
    row = process_row(db_path, child.pid)
    assert row[1] == "attached"
    assert job_cgroups.job_of(child.pid) == row[5]
    assert job_cgroups.names() == [row[5]]  # the failed attempts left no cgroup behind


@pytest.mark.vm
def test_filtered_out_process_is_recorded_once_with_the_reason(
    tmp_path, db_path, spawn, real_cgroup_parent, transcoder, daemons
):
    config = write_config(tmp_path, transcoder, "filters: {blocked_users: [root, nobody]}\n")
    daemon = daemons(db_path, config, real_cgroup_parent, events=False)
    now = daemon.clock.now()
    daemon.start(now)
    child = spawn([transcoder, "30"])
    daemon.full_scan(now)
    daemon.full_scan(now + 10)
    rows = query(db_path, "SELECT state, state_reason FROM processes")
    assert len(rows) == 1 and rows[0][0] == "skipped" and "blocked_users" in rows[0][1]
    assert cgroup_of(child.pid) == cgroup_of(os.getpid())


def test_without_writable_cgroups_processes_are_observed_never_attached(
    tmp_path, db_path, spawn, transcoder, daemons
):
    empty_root = tmp_path / "no-cgroups"
    empty_root.mkdir()
    governor = create_governor(root=empty_root, version=2)
    assert governor.check() is not None
    daemon = daemons(db_path, write_config(tmp_path, transcoder), None, governor=governor)
    daemon.start(daemon.clock.now())
    child = spawn([transcoder, "30"])
    pump(daemon, lambda: state_of(db_path, child.pid) == "observed")
    assert query(db_path, "SELECT attached_at, applied_cpu_weight FROM processes") == [(None, None)]
    child.kill()
    pump(daemon, lambda: process_row(db_path, child.pid)[1] == "exited")
    assert process_row(db_path, child.pid)[3] == 9


@pytest.mark.vm
def test_restart_adopts_running_processes_and_closes_those_that_exited(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder, daemons
):
    config = write_config(tmp_path, transcoder)
    first = daemons(db_path, config, job_cgroups.parent, events=False)
    survivor = spawn([transcoder, "30"])
    casualty = spawn([transcoder, "31"])
    first.start(first.clock.now())
    first.full_scan(first.clock.now())
    first.shutdown(first.clock.now())
    assert query(db_path, "SELECT state FROM processes ORDER BY pid") == [("detached",)] * 2
    # A clean stop lets go of its processes: they run on (nothing wrote cgroup.kill), limited.
    survivor_job = process_row(db_path, survivor.pid)[5]
    casualty_job = process_row(db_path, casualty.pid)[5]
    assert (survivor.poll(), casualty.poll()) == (None, None)
    assert job_cgroups.job_of(survivor.pid) == survivor_job
    assert job_cgroups.job_of(casualty.pid) == casualty_job
    casualty_dirs = job_cgroups.directories(casualty_job)
    assert all(directory.is_dir() for directory in casualty_dirs)
    casualty.kill()
    casualty.wait()
    second = daemons(db_path, config, job_cgroups.parent, events=False)
    second.start(second.clock.now())
    second.full_scan(second.clock.now())
    assert query(db_path, "SELECT count(*) FROM processes") == [(2,)]
    assert process_row(db_path, survivor.pid)[1] == "attached"
    state, code, signo, reason = process_row(db_path, casualty.pid)[1:5]
    assert (state, code, signo) == ("exited", None, None)
    assert reason == "exited while ffrtmp was not running"
    assert not any(d.exists() for d in casualty_dirs)  # its empty cgroup removed
    casualty_id = process_row(db_path, casualty.pid)[0]
    assert len(cgroup_removed_details(db_path, casualty_id)) == 1
    assert job_cgroups.job_of(survivor.pid) == survivor_job
    assert job_cgroups.names() == [survivor_job]


@pytest.mark.vm
def test_process_that_execs_into_ffmpeg_is_attached_on_its_exec_event(
    tmp_path, db_path, spawn, real_cgroup_parent, transcoder, daemons
):
    daemon = daemons(db_path, write_config(tmp_path, transcoder), real_cgroup_parent)
    daemon.start(daemon.clock.now())
    shell = spawn(["sh", "-c", f"sleep 0.3; exec {transcoder} 30"])
    daemon.full_scan(daemon.clock.now())
    assert process_row(db_path, shell.pid) is None
    pump(daemon, lambda: state_of(db_path, shell.pid) == "attached", what="attach")
    assert daemon.scans_run == 1  # found by the event, not by another scan


def test_daemon_prunes_history_past_its_retention(
    tmp_path, db_path, real_cgroup_parent, transcoder, daemons
):
    from datetime import UTC, datetime, timedelta

    config = write_config(tmp_path, transcoder, "retention: 1h\n")
    daemon = daemons(db_path, config, real_cgroup_parent, events=False)
    now = daemon.clock.now()
    old = datetime.fromtimestamp(now.wall, UTC) - timedelta(hours=2)
    for _ in range(3):
        daemon.store.record_scan(
            started_at=old,
            duration_ms=1,
            trigger="periodic",
            ok=True,
            seen=1,
            matched=0,
            new=0,
            unreadable=0,
            errors=0,
        )
    daemon.start(now)
    daemon.step(now)
    assert query(
        db_path,
        "SELECT count(*), min(started_at) > ? FROM scans",
        (str(old.replace(tzinfo=None)),),
    ) == [(1, 1)]
    assert daemon.next_prune_at > now + 60


@pytest.mark.vm
def test_requeued_dead_letter_is_retried_by_the_running_daemon(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder, daemons
):
    from datetime import UTC, datetime

    from ffrtmp.operator_actions import requeue

    failpoints.configure("governor.attach=EBUSY*4")  # the first attach and three retries
    daemon = daemons(
        db_path,
        write_config(tmp_path, transcoder),
        job_cgroups.parent,
        events=False,
        max_retry_attempts=3,
    )
    now = daemon.clock.now()
    daemon.start(now)
    child = spawn([transcoder, "30"])
    daemon.full_scan(now)
    for _ in range(3):
        now += 400
        daemon.step(now)
    ((retry_id, state),) = query(db_path, "SELECT id, state FROM retry_items")
    assert state == "dead"
    requeue(daemon.store, retry_id, now=datetime.fromtimestamp(now.wall, UTC))
    daemon.full_scan(now + 1)
    daemon.step(now + 2)
    assert query(db_path, "SELECT state, attempt FROM retry_items") == [("succeeded", 1)]
    row = process_row(db_path, child.pid)
    assert row[1] == "attached"
    assert job_cgroups.job_of(child.pid) == row[5]


def test_min_runtime_defers_the_attach_until_the_process_comes_of_age(
    tmp_path, db_path, spawn, real_cgroup_parent, transcoder, daemons
):
    config = write_config(tmp_path, transcoder, "filters: {min_runtime: 1s}\n")
    daemon = daemons(db_path, config, real_cgroup_parent)  # events; full scans only every 10 s
    daemon.start(daemon.clock.now())
    daemon.full_scan(daemon.clock.now())
    child = spawn([transcoder, "30"])
    started = time.monotonic()
    pump(daemon, lambda: time.monotonic() - started > 0.6)
    assert process_row(db_path, child.pid) is None
    pump(daemon, lambda: state_of(db_path, child.pid) == "attached", timeout=3)
    assert time.monotonic() - started < 2.5
    assert daemon.scans_run == 1


def test_health_totals_carry_across_a_restart(
    tmp_path, db_path, spawn, real_cgroup_parent, transcoder, daemons
):
    failpoints.configure("governor.attach=EBUSY*1")
    config = write_config(tmp_path, transcoder)
    first = daemons(db_path, config, real_cgroup_parent, events=False)
    spawn([transcoder, "30"])
    now = first.clock.now()
    first.start(now)
    first.step(now)  # scan (the attach fails once) and a first health snapshot
    first.shutdown(now)
    second = daemons(db_path, config, real_cgroup_parent, events=False)
    second.start(second.clock.now())
    report = second.health.evaluate(second.clock.now())
    assert (report.total_scans, report.total_attach_failures) == (1, 1)
    assert report.errors_by_type == {"transient": 1}
    assert report.consecutive_attach_failures == 0


@pytest.mark.vm
def test_an_attach_whose_outcome_the_store_refused_is_written_on_the_next_step(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder, daemons
):
    daemon = daemons(db_path, write_config(tmp_path, transcoder), job_cgroups.parent, events=False)
    now = daemon.clock.now()
    daemon.start(now)
    child = spawn([transcoder, "30"])
    # The second commit of the attach (its outcome) fails: the row stays 'discovered'.
    failpoints.configure("store.commit=EIO*1")
    original_register = daemon.store.register

    def register_then_arm(*args, **kwargs):
        failpoints.configure("")
        result = original_register(*args, **kwargs)
        failpoints.configure("store.commit=EIO*1")
        return result

    daemon.store.register = register_then_arm
    daemon.full_scan(now)
    daemon.store.register = original_register
    assert process_row(db_path, child.pid)[1] == "discovered"
    # Governed all the same; the outcome waits in memory (ffrtmp.outbox) for the store.
    assert job_cgroups.job_of(child.pid) is not None
    assert len(daemon.outbox) > 0
    daemon.step(now + 10)
    assert query(db_path, "SELECT operation, errno_name FROM error_events") == [("store", "EIO")]
    row = process_row(db_path, child.pid)
    assert row[1] == "attached"
    assert query(db_path, "SELECT count(*) FROM processes") == [(1,)]
    # The kernel kept the first attach's move: one job cgroup, with the process in it.
    assert job_cgroups.names() == [row[5]]
    assert job_cgroups.job_of(child.pid) == row[5]


def test_a_process_attached_by_hand_is_followed_to_its_exit_by_the_daemon(
    tmp_path, db_path, spawn, real_cgroup_parent, named_ffmpeg, daemons
):
    # A default target's name: `attach` without --force takes only those.
    config = write_config(tmp_path, named_ffmpeg, command="ffmpeg")
    daemon = daemons(db_path, config, real_cgroup_parent)
    daemon.start(daemon.clock.now())
    daemon.full_scan(daemon.clock.now())
    child = spawn([named_ffmpeg, "30"])
    pump(daemon, lambda: process_row(db_path, child.pid) is not None)
    # Suppose ffrtmp attach got there first: its row, not the daemon's, governs the pid.
    daemon.lifecycle.by_pid.clear()
    with daemon.store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM processes")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ffrtmp.cli",
            "attach",
            "--pid",
            str(child.pid),
            "--db",
            str(db_path),
            "--cgroup-parent",
            real_cgroup_parent,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    daemon.full_scan(daemon.clock.now())  # sees the row as someone else's; follows it all the same
    os.kill(child.pid, signal.SIGKILL)
    pump(daemon, lambda: process_row(db_path, child.pid)[1] == "exited", what="exit")
    row = process_row(db_path, child.pid)
    assert row[3] == 9 and row[5].startswith("manual-")


def test_health_read_from_the_database_uses_the_daemons_own_thresholds(
    tmp_path, db_path, real_cgroup_parent, transcoder, daemons
):
    from datetime import UTC, datetime, timedelta

    from ffrtmp.database import open_readonly
    from ffrtmp.stored_health import current_health

    config = write_config(
        tmp_path, transcoder, "health: {stale_scan_after: 10s, snapshot_interval: 5m}\n"
    )
    daemon = daemons(db_path, config, real_cgroup_parent, events=False)
    now = daemon.clock.now()
    daemon.start(now)
    daemon.step(now)
    engine = open_readonly(db_path)
    try:
        with engine.connect() as conn:
            taken = datetime.fromtimestamp(now.wall, UTC)
            later = current_health(conn, taken + timedelta(seconds=8))
            stale = current_health(conn, taken + timedelta(seconds=15))
    finally:
        engine.dispose()
    # With the built-in 2-minute threshold both would be healthy.
    assert later["status"] == "healthy"
    assert stale["status"] == "unhealthy"
    assert any("threshold 10s" in r for r in stale["reasons"])
