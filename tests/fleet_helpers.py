"""What the fleet tests share: local history made through the store, and the table-by-table
comparison of a node's local rows with the centre's."""

from __future__ import annotations

import errno
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, select

from ffrtmp.backoff import BackoffPolicy
from ffrtmp.candidate import Candidate
from ffrtmp.errors import classify
from ffrtmp.identity import ProcessIdentity, boot_id

TRANSIENT = classify(OSError(errno.EAGAIN, "Resource temporarily unavailable"))


def make_history(store, count: int, *, first_pid: int = 10_000, start: datetime | None = None):
    """`count` processes through the store: every third retrying after a failed attach,
    the others exited; a scan, an error and a health snapshot every ten. Returns process ids."""
    start = start or datetime.now(UTC) - timedelta(hours=1)
    ids = []
    for n in range(count):
        now = start + timedelta(milliseconds=n)
        candidate = Candidate(
            identity=ProcessIdentity(boot_id(), first_pid + n, 1000 + n),
            command="ffmpeg",
            argv=("ffmpeg", "-i", f"rtmp://in/{n}", "-f", "flv", "rtmp://out/é"),
            ppid=1,
            rule="ffmpeg",
        )
        process_id, _ = store.register(
            candidate, job_id=f"job-{first_pid + n}", limits=None, now=now
        )
        ids.append(process_id)
        if n % 3 == 0:
            store.record_attach_failure(
                process_id,
                TRANSIENT,
                now=now,
                retry_enabled=True,
                policy=BackoffPolicy(max_attempts=1),
            )
        else:
            store.record_exit(
                process_id,
                now=now,
                exit_code=0,
                exit_signal=None,
                reason=None,
                peak_memory_bytes=5 * 2**30,
                cpu_seconds=1.5,
            )
        if n % 10 == 0:
            store.record_scan(
                started_at=now,
                duration_ms=1.5,
                trigger="interval",
                ok=True,
                seen=n,
                matched=1,
                new=1,
                unreadable=0,
                errors=0,
            )
            store.record_error(
                "attach", TRANSIENT, now=now, process_id=process_id, pid=first_pid + n
            )
            store.record_health(
                now=now,
                run_id=None,
                status="healthy",
                reasons=[],
                counters={},
                errors_by_type={"transient": 1},
            )
    return ids


def local_rows(db_path: Path) -> dict[str, list[dict]]:
    from ffrtmp.fleet.central_schema import shipped_tables

    engine = create_engine(f"sqlite:///{db_path}")
    try:
        with engine.connect() as conn:
            return {
                t.name: [dict(r._mapping) for r in conn.execute(select(t).order_by(t.c.id))]
                for t in shipped_tables()
            }
    finally:
        engine.dispose()


def central_rows(url: str, node_id: str) -> dict[str, list[dict]]:
    from ffrtmp.fleet.central_schema import CENTRAL_TABLES

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            found = {}
            for name, t in CENTRAL_TABLES.items():
                rows = conn.execute(select(t).where(t.c.node_id == node_id).order_by(t.c.id))
                found[name] = [
                    {k: v for k, v in r._mapping.items() if k != "node_id"} for r in rows
                ]
            return found
    finally:
        engine.dispose()


def node_id_of(db_path: Path) -> str:
    import sqlite3

    conn = sqlite3.connect(db_path)
    try:
        return conn.execute("SELECT node_id FROM ship_node").fetchone()[0]
    finally:
        conn.close()


def assert_same_rows(db_path: Path, url: str) -> None:
    """Every local row is in the centre exactly once, with the same content, table by table."""
    node = node_id_of(db_path)
    local, there = local_rows(db_path), central_rows(url, node)
    for name in local:
        assert len(there[name]) == len(local[name]), (
            f"{name}: {len(there[name])} central rows, {len(local[name])} local"
        )
        for theirs, ours in zip(there[name], local[name], strict=True):
            assert theirs == ours, f"{name} row {ours.get('id')} differs: {theirs} != {ours}"
