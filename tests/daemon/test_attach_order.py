"""No database write stands between a new process and its limits, and a crash in between is
made good from what the kernel shows.

Real processes, real cgroups below the test's own, a real SQLite file. The moment of the move
is observed by a CgroupFiles that reads the database as it writes the pid into cgroup.procs.
"""

from __future__ import annotations

from pathlib import Path

from cgroup_hierarchy import JobCgroups
from daemon_harness import query, write_config

from ffrtmp import failpoints
from ffrtmp.cgroups import CgroupFiles, create_governor
from ffrtmp.identity import current_identity


class ReadsRowsAtTheMove(CgroupFiles):
    """Notes, at each write of a pid into a cgroup.procs, how many rows the database holds."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.rows_at_move: list[int] = []

    def write(self, path: Path, text: str) -> None:
        if path.name == "cgroup.procs":
            self.rows_at_move.append(query(self.db_path, "SELECT count(*) FROM processes")[0][0])
        super().write(path, text)


def test_a_new_process_is_moved_before_its_row_is_written_and_then_recorded(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder, daemons
):
    files = ReadsRowsAtTheMove(db_path)
    governor = create_governor(parent=job_cgroups.parent, files=files)
    config = write_config(tmp_path, transcoder)
    daemon = daemons(db_path, config, job_cgroups.parent, events=False, governor=governor)
    daemon.start(daemon.clock.now())
    child = spawn([transcoder, "60"])
    daemon.full_scan(daemon.clock.now())
    assert files.rows_at_move and set(files.rows_at_move) == {0}, files.rows_at_move
    rows = query(
        db_path,
        "SELECT state, job_id, applied_cpu_quota FROM processes WHERE pid = ?",
        (child.pid,),
    )
    assert len(rows) == 1 and rows[0][0] == "attached"
    assert job_cgroups.job_of(child.pid) == rows[0][1]
    process_id = query(db_path, "SELECT id FROM processes")[0][0]
    kinds = query(
        db_path,
        "SELECT kind FROM process_events WHERE process_id = ? ORDER BY id",
        (process_id,),
    )
    assert [k for (k,) in kinds] == ["discovered", "limits_applied"]


def test_a_process_moved_by_an_attach_cut_short_before_its_row_is_recorded_as_it_is(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder, daemons
):
    """What a SIGKILL between the move and the row leaves: the process in its job cgroup with
    its limits, no row. The next start records it attached, without another try: every try
    fails here (EBUSY), and a try would move it out and queue retries."""
    config = write_config(tmp_path, transcoder)
    child = spawn([transcoder, "60"])
    identity = current_identity(child.pid)
    assert identity is not None
    first = daemons(db_path, config, job_cgroups.parent, events=False)
    candidate = first.scanner.inspect(child.pid)
    job_id = first.governor_job_id(candidate)
    limits = first.config.limits_for(candidate.rule)
    # The crashed daemon's move, done by the same governor code.
    create_governor(parent=job_cgroups.parent).attach(identity, job_id, limits)
    assert job_cgroups.job_of(child.pid) == job_id

    failpoints.configure("governor.attach=EBUSY*inf")
    daemon = daemons(db_path, config, job_cgroups.parent, events=False)
    daemon.start(daemon.clock.now())
    daemon.full_scan(daemon.clock.now(), trigger="startup")
    rows = query(db_path, "SELECT state, job_id FROM processes WHERE pid = ?", (child.pid,))
    assert rows == [("attached", job_id)]
    assert query(db_path, "SELECT count(*) FROM retry_items") == [(0,)]
    assert job_cgroups.job_of(child.pid) == job_id
    applied = query(
        db_path,
        "SELECT applied_cpu_quota, applied_memory_limit_mb FROM processes WHERE pid = ?",
        (child.pid,),
    )
    assert applied == [(limits.cpu_quota, limits.memory_limit_mb)]
