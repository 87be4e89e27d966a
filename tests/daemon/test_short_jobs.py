"""Short jobs (thumbnails, probes, a client that hangs up) end before their attach completes:
a normal outcome, recorded as vanished or exited, never an error and never against health."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from candidates import make_candidate
from daemon_harness import query, start_watch
from helpers_processes import TEST_TARGET, wait_until

from ffrtmp.attach import Attacher
from ffrtmp.backoff import BackoffPolicy
from ffrtmp.cgroups import create_governor
from ffrtmp.clock import Moment
from ffrtmp.health import HealthThresholds, HealthTracker
from ffrtmp.identity import current_identity
from ffrtmp.limits import Limits
from ffrtmp.states import ProcessState

BURST = 100


def test_a_process_gone_before_its_attach_is_vanished_not_a_failure(
    store, db_path, spawn, transcoder, cgroup_hierarchy, real_cgroup_parent
):
    process = spawn([transcoder, "600"])
    identity = current_identity(process.pid)
    candidate = make_candidate(identity=identity, argv=("ffmpeg", "600"), ppid=os.getpid())
    process_id, _ = store.register(
        candidate, job_id="auto-ffmpeg-short", limits=Limits(), now=identity.started_at
    )
    process.kill()
    process.wait(timeout=10)  # reaped: the pid is gone, as a short job's is
    started = Moment(0.0, 0.0)
    health = HealthTracker(HealthThresholds(degraded_attach_failures=1), started_at=started)
    governor = create_governor(
        root=cgroup_hierarchy.root, parent=real_cgroup_parent, version=cgroup_hierarchy.version
    )
    attacher = Attacher(store, governor, BackoffPolicy(), retry_enabled=True, health=health)

    result = attacher.attach(process_id, identity, "auto-ffmpeg-short", Limits(), now=started + 1)

    assert result.state == ProcessState.VANISHED
    assert query(db_path, "SELECT count(*) FROM error_events") == [(0,)]
    assert query(db_path, "SELECT count(*) FROM retry_items") == [(0,)]
    report = health.evaluate(started + 1)
    assert (report.consecutive_attach_failures, report.total_attach_failures) == (0, 0)
    assert report.errors_by_type == {}


@pytest.mark.slow
def test_a_burst_of_sub_second_jobs_leaves_the_daemon_healthy(
    tmp_path, db_path, spawn, transcoder, cgroup_hierarchy, real_cgroup_parent
):
    config = tmp_path / "watch.yaml"
    config.write_text(
        f"target_commands: [{TEST_TARGET}]\n"
        f"commands:\n  {TEST_TARGET}:\n    match: {{exe: '{transcoder}'}}\n"
        "health: {degraded_attach_failures: 10}\n"
        "scan_interval: 1s\n"
    )
    daemon = start_watch(spawn, db_path, config, real_cgroup_parent, "--discovery", "events")

    # Lifetimes from 20 ms to 0.6 s: some end before the daemon looks, some while it attaches,
    # most after it.
    jobs = [subprocess.Popen([transcoder, f"{0.02 + (i % 30) * 0.02:.2f}"]) for i in range(BURST)]
    try:
        for job in jobs:
            assert job.wait(timeout=60) == 0
    finally:
        for job in jobs:
            if job.poll() is None:
                job.kill()
                job.wait()
    pids = tuple(job.pid for job in jobs)
    marks = ",".join("?" * len(pids))

    def recorded_ends():
        return query(
            db_path,
            f"SELECT pid, state FROM processes WHERE pid IN ({marks}) AND exited_at IS NOT NULL",
            pids,
        )

    # The jobs that lived long enough to be seen (0.2 s and more is far past the daemon's
    # reaction to an exec) are all recorded, each with its end, and nothing else is unended.
    seen_for_sure = {job.pid for i, job in enumerate(jobs) if (i % 30) >= 9}
    wait_until(
        lambda: seen_for_sure <= {pid for pid, _ in recorded_ends()},
        what="the end of every job that lived 0.2 s or more",
    )
    wait_until(
        lambda: (
            len(recorded_ends())
            == len(query(db_path, f"SELECT id FROM processes WHERE pid IN ({marks})", pids))
        ),
        what="every recorded job's end",
    )
    assert {state for _, state in recorded_ends()} <= {"exited", "vanished"}
    assert query(db_path, "SELECT count(*) FROM error_events") == [(0,)]
    assert query(db_path, "SELECT count(*) FROM retry_items") == [(0,)]
    assert daemon.poll() is None
    health = subprocess.run(
        [sys.executable, "-m", "ffrtmp.cli", "health", "--json", "--db", str(db_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(health.stdout)["status"] == "healthy", health.stdout
