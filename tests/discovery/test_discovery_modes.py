"""How the daemon learns of new processes: the kernel's process events, full scans, or both.

`--discovery auto` uses events where the connector opens and falls back to polling; a lost
event (the socket overflowed) is made good at once by a full scan; between scans an idle
event-driven daemon looks at nothing. Real processes, real cgroups, the real connector; the
connector's refusal is the failpoint `proc_events.open` (a refusal cannot be produced for
root on this machine otherwise). The overflow's burst of attaches runs on cgroup v2 in the VM
too (marked vm).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from cgroup_hierarchy import JobCgroups
from daemon_harness import query, write_config
from ffrtmp_commands import FFRTMP
from helpers_processes import STATE_TIMEOUT_S, wait_until

from ffrtmp import failpoints
from ffrtmp.clock import Moment
from ffrtmp.proc_events import ExecEvent, ProcEventListener

REFUSED = "proc_events.open=EPERM*inf"
REFUSAL_SENTENCE = (
    "Error: --discovery events is not possible here: the kernel refused the process-events "
    "connector (EPERM) to this process (root); it needs CAP_NET_ADMIN in the initial user "
    "namespace\n"
)


def watch_once(db_path, config, cgroup_parent, discovery: str, failpoints_spec: str = ""):
    env = dict(os.environ, FFRTMP_FAILPOINTS=failpoints_spec)
    return subprocess.run(
        [
            *FFRTMP,
            "watch",
            "--once",
            "--discovery",
            discovery,
            "--db",
            str(db_path),
            "--watch-config",
            str(config),
            "--cgroup-parent",
            cgroup_parent,
        ],
        capture_output=True,
        text=True,
        timeout=STATE_TIMEOUT_S,
        env=env,
    )


def recorded_discovery(db_path) -> tuple[list, list]:
    runs = query(db_path, "SELECT discovery FROM daemon_runs")
    snapshots = query(db_path, "SELECT json_extract(details, '$.discovery') FROM health_snapshots")
    return runs, snapshots


def test_auto_uses_the_kernel_events_where_they_work(
    tmp_path, db_path, real_cgroup_parent, transcoder
):
    result = watch_once(db_path, write_config(tmp_path, transcoder), real_cgroup_parent, "auto")
    assert result.returncode == 0, result.stderr
    assert recorded_discovery(db_path) == ([("events",)], [("events",)])


def test_auto_falls_back_to_polling_when_the_connector_is_refused(
    tmp_path, db_path, real_cgroup_parent, transcoder
):
    config = write_config(tmp_path, transcoder)
    result = watch_once(db_path, config, real_cgroup_parent, "auto", REFUSED)
    assert result.returncode == 0, result.stderr
    assert recorded_discovery(db_path) == ([("poll",)], [("poll",)])


def test_events_demanded_but_refused_exits_1_with_the_reason(
    tmp_path, db_path, real_cgroup_parent, transcoder
):
    config = write_config(tmp_path, transcoder)
    result = watch_once(db_path, config, real_cgroup_parent, "events", REFUSED)
    assert result.returncode == 1
    assert result.stderr.endswith(REFUSAL_SENTENCE)


def test_events_demanded_but_refused_says_one_sentence_and_writes_nothing(
    tmp_path, db_path, real_cgroup_parent, transcoder
):
    """A refused start must leave no database behind, and say only why it refused (after the
    warning that names the failpoint which makes the kernel refuse here)."""
    config = write_config(tmp_path, transcoder)
    result = watch_once(db_path, config, real_cgroup_parent, "events", REFUSED)
    assert result.returncode == 1
    warning, refusal = result.stderr.split("\n", 1)
    assert warning.endswith(
        "WARNING ffrtmp.daemon: failpoint armed (FFRTMP_FAILPOINTS): proc_events.open fails "
        "with EPERM every time; errors it injects are not real ones"
    )
    assert refusal == REFUSAL_SENTENCE
    assert not db_path.exists()


def event_daemon(daemons, db_path, config, cgroup_parent, listener: ProcEventListener):
    return daemons(
        db_path, config, cgroup_parent, events=False, scan_interval="60s", listener=listener
    )


def overflows_in_snapshot(daemon, db_path, now: Moment) -> int:
    daemon.health_tick(now + daemon.snapshots.interval)  # the next periodic snapshot
    rows = query(db_path, "SELECT details FROM health_snapshots ORDER BY id DESC LIMIT 1")
    return json.loads(rows[0][0])["event_overflows"]


@pytest.mark.vm
def test_a_real_overflow_triggers_an_immediate_full_scan_that_finds_the_lost_ones(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder, daemons
):
    """A receive buffer of a few kilobytes holds a handful of events: thirty new processes
    while the daemon is not reading overflow it for real."""
    listener = ProcEventListener(receive_buffer_bytes=1024).open()
    daemon = event_daemon(
        daemons, db_path, write_config(tmp_path, transcoder), job_cgroups.parent, listener
    )
    now = daemon.clock.now()
    daemon.start(now)
    daemon.full_scan(now, trigger="startup")
    children = [spawn([transcoder, "30"]) for _ in range(30)]
    daemon.step(now + 1)  # long before the next periodic scan (60 s)
    assert [t for (t,) in query(db_path, "SELECT trigger FROM scans ORDER BY id")] == [
        "startup",
        "overflow",
    ]
    pids = sorted(c.pid for c in children)
    assert query(db_path, "SELECT pid FROM processes WHERE state = 'attached' ORDER BY pid") == [
        (p,) for p in pids
    ]
    jobs = dict(query(db_path, "SELECT pid, job_id FROM processes"))
    assert {pid: job_cgroups.job_of(pid) for pid in pids} == jobs
    assert query(db_path, "SELECT new > 0 FROM scans WHERE trigger = 'overflow'") == [(1,)]
    assert daemon.event_overflows >= 1
    assert overflows_in_snapshot(daemon, db_path, now) == daemon.event_overflows


def test_an_overflow_is_counted_once_and_scanned_for_at_once(
    tmp_path, db_path, spawn, real_cgroup_parent, transcoder, daemons
):
    daemon = daemons(
        db_path, write_config(tmp_path, transcoder), real_cgroup_parent, scan_interval="60s"
    )
    now = daemon.clock.now()
    daemon.start(now)
    daemon.full_scan(now, trigger="startup")
    failpoints.configure("proc_events.recv=ENOBUFS*1")
    child = spawn([transcoder, "30"])
    daemon.step(now + 1)
    assert query(db_path, "SELECT trigger FROM scans ORDER BY id") == [
        ("startup",),
        ("overflow",),
    ]
    assert query(db_path, "SELECT pid, state FROM processes") == [(child.pid, "attached")]
    assert daemon.event_overflows == 1
    assert overflows_in_snapshot(daemon, db_path, now) == 1


def read_syscalls(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("syscr:"))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


IDLE_SLEEPERS = 500
IDLE_SECONDS = 3.0
READS_PER_EXEC = 10  # one look at a new process reads stat, cmdline, status: about four
CPU_PER_EXEC = 0.002  # measured about 0.3 ms; a look at each exec is allowed, a scan is not


@pytest.mark.slow
def test_an_idle_event_driven_daemon_looks_at_no_process_between_scans(
    tmp_path, db_path, spawn, real_cgroup_parent, transcoder
):
    """Other people's processes start on this machine all the time and each costs the daemon
    one look, so the budget grows with the execs counted meanwhile. A walk over /proc reads
    at least one file per process: with 500 idle sleepers added, far more than the budget.
    """
    for i in range(IDLE_SLEEPERS):
        spawn(["sleep", f"600.{i:04d}"], wait_exec=False)
    config = write_config(tmp_path, transcoder)
    with open(tmp_path / "daemon.log", "w") as log:
        daemon = spawn(
            [
                *FFRTMP,
                "watch",
                "--discovery",
                "events",
                "--scan-interval",
                "60s",
                "--db",
                db_path,
                "--watch-config",
                config,
                "--cgroup-parent",
                real_cgroup_parent,
            ],
            wait_exec=False,
            stderr=log,
        )
    # The start-up scan and the first health snapshot are written: start-up is over.
    wait_until(
        lambda: (
            db_path.exists()
            and query(
                db_path, "SELECT count(*) FROM sqlite_master WHERE name = 'health_snapshots'"
            )[0][0]
            and query(db_path, "SELECT count(*) FROM health_snapshots")[0][0]
        ),
        timeout=30,
        what="the daemon's start-up",
    )
    ((table_size,),) = query(db_path, "SELECT seen FROM scans")
    with ProcEventListener() as machine:
        machine.read_events()
        reads_before, cpu_before = read_syscalls(daemon.pid), cpu_seconds(daemon.pid)
        time.sleep(IDLE_SECONDS)
        reads = read_syscalls(daemon.pid) - reads_before
        cpu = cpu_seconds(daemon.pid) - cpu_before
        execs = sum(isinstance(e, ExecEvent) for e in machine.read_events())
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=20) == 0
    assert table_size >= IDLE_SLEEPERS
    assert query(db_path, "SELECT trigger FROM scans") == [("startup",)]
    assert reads <= 100 + READS_PER_EXEC * execs, f"{reads} reads for {execs} execs"
    assert cpu < 0.05 + CPU_PER_EXEC * execs, f"{cpu:.2f} s CPU for {execs} execs"
