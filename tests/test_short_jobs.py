"""Short jobs (thumbnails, probes, a client that hangs up) end before their attach completes:
a normal outcome, recorded as vanished or exited, never an error and never against health."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ffrtmp.attach import Attacher
from ffrtmp.backoff import BackoffPolicy
from ffrtmp.candidate import Candidate
from ffrtmp.cgroups import create_governor
from ffrtmp.health import HealthThresholds, HealthTracker
from ffrtmp.identity import current_identity
from ffrtmp.limits import Limits
from ffrtmp.states import ProcessState

BURST = 100


def rows(db_path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def test_a_process_gone_before_its_attach_is_vanished_not_a_failure(
    store, db_path, spawn, fake_ffmpeg, cgroup_hierarchy, real_cgroup_parent
):
    process = spawn([fake_ffmpeg, "600"])
    identity = current_identity(process.pid)
    candidate = Candidate(identity, "ffmpeg", ("ffmpeg", "600"), os.getpid(), "ffmpeg")
    process_id, _ = store.register(
        candidate, job_id="auto-ffmpeg-short", limits=Limits(), now=identity.started_at
    )
    process.kill()
    process.wait(timeout=10)  # reaped: the pid is gone, as a short job's is
    health = HealthTracker(HealthThresholds(degraded_attach_failures=1), started_at=0.0)
    governor = create_governor(
        root=cgroup_hierarchy.root, parent=real_cgroup_parent, version=cgroup_hierarchy.version
    )
    attacher = Attacher(store, governor, BackoffPolicy(), retry_enabled=True, health=health)

    result = attacher.attach(process_id, identity, "auto-ffmpeg-short", Limits(), now=1.0)

    assert result.state == ProcessState.VANISHED
    assert rows(db_path, "SELECT count(*) FROM error_events") == [(0,)]
    assert rows(db_path, "SELECT count(*) FROM retry_items") == [(0,)]
    report = health.evaluate(1.0)
    assert (report.consecutive_attach_failures, report.total_attach_failures) == (0, 0)
    assert report.errors_by_type == {}
