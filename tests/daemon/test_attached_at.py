"""`processes.attached_at` is when the pid moved into its job cgroup (docs/schema.md), not the
moment the process was found: the cgroup work between the two takes time of its own."""

from __future__ import annotations

from datetime import datetime, timedelta

from cgroup_hierarchy import JobCgroups
from daemon_harness import close, make_daemon, pump, query, write_config


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_attached_at_is_the_moment_of_the_move(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder
):
    config = write_config(tmp_path, transcoder)
    daemon = make_daemon(db_path, config, job_cgroups.parent, memory_limit=64)
    try:
        daemon.start(daemon.clock.now())
        child = spawn([transcoder, "30"])

        def row():
            rows = query(
                db_path,
                "SELECT id, state, discovered_at, attached_at FROM processes WHERE pid = ?",
                (child.pid,),
            )
            return rows[0] if rows else None

        pump(daemon, lambda: (row() or (0, None))[1] == "attached", what="attach")
        process_id, _, discovered_at, attached_at = row()
        assert job_cgroups.job_of(child.pid) is not None  # the premise: it did move
        found, moved = _time(discovered_at), _time(attached_at)
        # Later than its discovery by the cgroup work (directories, limits, the move), which
        # takes far more than the microsecond the column resolves, and far less than seconds.
        assert found < moved < found + timedelta(seconds=5)
        ((applied_at,),) = query(
            db_path,
            "SELECT occurred_at FROM process_events WHERE process_id = ? AND kind = ?",
            (process_id, "limits_applied"),
        )
        assert _time(applied_at) == moved
    finally:
        close(daemon)
