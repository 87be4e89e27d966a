"""What `ffrtmp release` stands on: the store finds the governed rows of a pid or job, and the
governor removes a job's cgroups where its attach recorded them, whatever parent the releasing
command was given; the lifecycle records a removal through the store. Real cgroups below the
test's own (tests/cgroup_hierarchy.py), a real SQLite file."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from datetime import UTC, datetime

from cgroup_hierarchy import JobCgroups
from helpers_processes import SLEEP_BINARY

from ffrtmp.candidate import Candidate
from ffrtmp.cgroups import create_governor, job_id_for
from ffrtmp.identity import ProcessIdentity, boot_id, current_identity
from ffrtmp.limits import Limits

NOW = datetime.now(UTC).replace(microsecond=0)


def test_release_removes_the_recorded_job_cgroups_and_nothing_else(job_cgroups: JobCgroups, spawn):
    hierarchy = job_cgroups.hierarchy
    made_by = create_governor(hierarchy.root, job_cgroups.parent, hierarchy.version)
    child = spawn([SLEEP_BINARY, "600"])
    identity = current_identity(child.pid)
    job_id = job_id_for("manual", "sleeper", identity)
    attachment = made_by.attach(identity, job_id, Limits())
    stranger = job_cgroups.parent_directory() / "other.service"
    stranger.mkdir()
    # A row that names a cgroup not made for the job (a hand-edited database): never removed.
    recorded = [*attachment.cgroup_paths, str(stranger)]
    # `ffrtmp release` without the daemon's --cgroup-parent: its own parent is elsewhere.
    releasing = create_governor(
        hierarchy.root, f"{job_cgroups.parent}/elsewhere", hierarchy.version
    )

    assert releasing.release(job_id, recorded=recorded) is False  # the process is still in it
    assert job_cgroups.names() == sorted([job_id, "other.service"])

    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=60)
    assert releasing.release(job_id, recorded=recorded) is True
    assert job_cgroups.names() == ["other.service"]
    assert not any(os.path.exists(path) for path in attachment.cgroup_paths)
    assert releasing.release(job_id, recorded=recorded) is True  # gone already: nothing to do


def _register(store, pid: int, start_ticks: int, job_id: str) -> int:
    candidate = Candidate(
        identity=ProcessIdentity(boot_id(), pid, start_ticks),
        command="transcoder",
        argv=("transcoder",),
        ppid=1,
        rule="transcoder",
    )
    process_id, _ = store.register(candidate, job_id=job_id, limits=Limits(), now=NOW)
    return process_id


def test_the_governed_rows_of_a_pid_or_job_newest_first(store):
    older = _register(store, 5101, 1, "auto-transcoder-5101-1")
    newer = _register(store, 5101, 2, "auto-transcoder-5101-2")
    never_attached = _register(store, 5101, 3, "auto-transcoder-5101-3")
    origin = {"cpu": "/user.slice"}
    for process_id, job_id in (
        (older, "auto-transcoder-5101-1"),
        (newer, "auto-transcoder-5101-2"),
    ):
        store.record_attached(
            process_id,
            cgroup_version=1,
            cgroup_paths=[f"/cg/cpu/ffrtmp/{job_id}", f"/cg/memory/ffrtmp/{job_id}"],
            applied=Limits(),
            now=NOW,
            origin_cgroups=origin,
        )
    store.mark_detached([older], now=NOW, reason="daemon stopped")

    found = store.governed(pid=5101)
    assert [g.process_id for g in found] == [newer, older]
    assert never_attached not in [g.process_id for g in found]
    assert found[0].identity == ProcessIdentity(boot_id(), 5101, 2)
    assert found[0].cgroup_paths == (
        "/cg/cpu/ffrtmp/auto-transcoder-5101-2",
        "/cg/memory/ffrtmp/auto-transcoder-5101-2",
    )
    assert found[0].origin_cgroups == origin
    assert [g.process_id for g in store.governed(job_id="auto-transcoder-5101-1")] == [older]

    store.record_released(newer, moved_to={"cpu": "/user.slice"}, now=NOW, by="operator")
    assert [g.process_id for g in store.governed(pid=5101)] == [older]


def test_a_cgroup_removal_is_an_event_of_its_process_unless_the_row_was_pruned(store, db_path):
    process_id = _register(store, 5102, 1, "auto-transcoder-5102-1")
    paths = ["/cg/cpu/ffrtmp/auto-transcoder-5102-1"]
    store.record_cgroup_removed(process_id, job_id="auto-transcoder-5102-1", cgroups=paths, now=NOW)
    store.record_cgroup_removed(process_id + 1, job_id="auto-gone-1", cgroups=[], now=NOW)

    con = sqlite3.connect(db_path)
    try:
        rows = con.execute(
            "SELECT process_id, kind, details FROM process_events WHERE kind = 'cgroup_removed'"
        ).fetchall()
    finally:
        con.close()
    assert [(row_id, kind, json.loads(details)) for row_id, kind, details in rows] == [
        (process_id, "cgroup_removed", {"job_id": "auto-transcoder-5102-1", "cgroups": paths})
    ]
