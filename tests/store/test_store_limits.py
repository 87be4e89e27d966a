"""Limits go into a process row and come back out through one mapping (ffrtmp.store): the
requested limits at register, reconsider and take-over, the applied ones at the attach, on a
real SQLite file."""

from __future__ import annotations

import sqlite3
from dataclasses import fields
from datetime import UTC, datetime

from ffrtmp import schema
from ffrtmp.candidate import Candidate
from ffrtmp.identity import ProcessIdentity, boot_id
from ffrtmp.limits import Limits
from ffrtmp.states import ProcessState

NOW = datetime.now(UTC).replace(microsecond=0)
LIMIT_COLUMNS = (
    "requested_cpu_quota, requested_cpu_weight, requested_memory_limit_mb, "
    "applied_cpu_quota, applied_cpu_weight, applied_memory_limit_mb"
)


def candidate(pid: int) -> Candidate:
    return Candidate(
        identity=ProcessIdentity(boot_id(), pid, 11),
        command="transcoder",
        argv=("transcoder", "-i", "in"),
        ppid=1,
        rule="transcoder",
    )


def limit_columns_of(db_path, process_id: int) -> tuple:
    con = sqlite3.connect(db_path)
    try:
        return con.execute(
            f"SELECT {LIMIT_COLUMNS} FROM processes WHERE id = ?", (process_id,)
        ).fetchone()
    finally:
        con.close()


def test_every_limit_has_a_requested_and_an_applied_column():
    """A new Limits field without its two columns (a migration) fails here, not in the store."""
    columns = set(schema.processes.c.keys())
    for field in fields(Limits):
        assert {f"requested_{field.name}", f"applied_{field.name}"} <= columns


def test_requested_and_applied_limits_are_stored_and_read_back(store, db_path):
    requested = Limits(cpu_quota=150, cpu_weight=300, memory_limit_mb=512)
    process_id, new = store.register(
        candidate(4301), job_id="auto-transcoder-4301-11", limits=requested, now=NOW
    )
    assert new
    assert limit_columns_of(db_path, process_id) == (150.0, 300, 512, None, None, None)
    [tracked] = store.unfinished_processes()
    assert tracked.limits == requested

    applied = Limits(cpu_quota=149.5, cpu_weight=290, memory_limit_mb=511)
    store.record_attached(
        process_id,
        cgroup_version=1,
        cgroup_paths=["/x/auto-transcoder-4301-11"],
        applied=applied,
        now=NOW,
    )
    assert limit_columns_of(db_path, process_id) == (150.0, 300, 512, 149.5, 290, 511)
    # The requested limits are what a restarted daemon governs with, not the applied ones.
    [tracked] = store.unfinished_processes()
    assert tracked.limits == requested


def test_a_row_without_limits_reads_as_no_quota_no_memory_limit_and_the_default_weight(
    store, db_path
):
    process_id, _ = store.register(
        candidate(4302), job_id="auto-transcoder-4302-11", limits=None, now=NOW
    )
    assert limit_columns_of(db_path, process_id) == (None,) * 6
    [tracked] = store.unfinished_processes()
    assert tracked.limits == Limits(
        cpu_quota=None, cpu_weight=Limits().cpu_weight, memory_limit_mb=None
    )


def test_reconsider_and_take_over_store_the_new_requested_limits(store, db_path):
    skipped, _ = store.register(
        candidate(4303),
        job_id="auto-transcoder-4303-11",
        limits=None,
        now=NOW,
        state=ProcessState.SKIPPED,
        reason="filtered",
    )
    assert store.reconsider_skipped(
        skipped, Limits(cpu_quota=None, cpu_weight=50, memory_limit_mb=64), now=NOW
    )
    assert limit_columns_of(db_path, skipped)[:3] == (None, 50, 64)

    other, _ = store.register(
        candidate(4304),
        job_id="auto-transcoder-4304-11",
        limits=None,
        now=NOW,
        state=ProcessState.SKIPPED,
        reason="filtered",
    )
    taken = Limits(cpu_quota=25, cpu_weight=10, memory_limit_mb=None)
    assert store.take_over(other, job_id="manual-night", limits=taken, now=NOW, by="operator")
    assert limit_columns_of(db_path, other)[:3] == (25.0, 10, None)
    by_id = {t.process_id: t for t in store.unfinished_processes()}
    assert by_id[other].limits == taken
    assert by_id[other].job_id == "manual-night"
