"""The fleet's figures (docs/fleet.md), each against a reference measured in the same run:

1. Shipping one node's history of --processes processes (made through the store) to an empty
   central database, against PostgreSQL's own COPY of the very same rows into empty tables.
   Target: shipping takes at most 3x the COPY time.
2. Twenty nodes of that size in the central database: `ffrtmp fleet status --json` and
   `ffrtmp retries list --state dead --json` there, against `ffrtmp health --json` and the same
   `retries list` on one node's SQLite file. Target: under 2x.
3. Catch-up after a 10-minute partition of a busy node: the rows such a node makes in ten
   minutes (a process started and ended every second, a scan every second, a health snapshot a
   minute), made while nothing ships; then the time until the centre has them all.
4. What the change log costs the daemon's own writes: the same --overhead-processes written
   through the store into a database that ships (triggers fire) and one that does not.

    .venv/bin/python bench/fleet.py [--processes 100000] [--nodes 20] [--repeat 5]

It starts its own private PostgreSQL 15 cluster (tests/postgres_server.py: run as root, Debian's
postgresql package) and keeps the node's database on /dev/shm. Building 100,000 processes through
the store takes about five minutes here.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from postgres_server import PostgresServer  # noqa: E402
from sqlalchemy import create_engine, select, text  # noqa: E402

from ffrtmp.backoff import BackoffPolicy  # noqa: E402
from ffrtmp.candidate import Candidate  # noqa: E402
from ffrtmp.database import open_for_writing  # noqa: E402
from ffrtmp.errors import classify  # noqa: E402
from ffrtmp.fleet import central  # noqa: E402
from ffrtmp.fleet.central_schema import CENTRAL_TABLES, shipped_tables  # noqa: E402
from ffrtmp.fleet.shipper import Shipper  # noqa: E402
from ffrtmp.identity import ProcessIdentity  # noqa: E402
from ffrtmp.store import Store  # noqa: E402

TRANSIENT = classify(OSError(errno.EAGAIN, "Resource temporarily unavailable"))
BOOT = "00000000-0000-0000-0000-00000000b0b0"
FFRTMP = [sys.executable, "-m", "ffrtmp.cli"]


def one_process(store: Store, n: int, now: datetime) -> None:
    """One process's history as the daemon writes it: registered, then exited (one in a
    hundred after a failed attach, one in a thousand left as a dead letter)."""
    candidate = Candidate(
        identity=ProcessIdentity(BOOT, 100_000 + n, n),
        command="ffmpeg",
        argv=("ffmpeg", "-i", f"rtmp://in/{n}", "-c:v", "libx264", "-f", "flv", f"rtmp://out/{n}"),
        ppid=1,
        rule="ffmpeg",
    )
    process_id, _ = store.register(candidate, job_id=f"job-{n}", limits=None, now=now)
    if n % 100 == 0:
        policy = BackoffPolicy(max_attempts=1)
        store.record_attach_failure(
            process_id, TRANSIENT, now=now, retry_enabled=True, policy=policy
        )
        if n % 1000 == 0:
            store.record_attach_failure(
                process_id, TRANSIENT, now=now, retry_enabled=True, policy=policy, attempt=1
            )
            return
    store.record_exit(
        process_id,
        now=now + timedelta(seconds=30),
        exit_code=0,
        exit_signal=None,
        reason=None,
        peak_memory_bytes=300 * 2**20,
        cpu_seconds=12.5,
    )


def busy_minutes(store: Store, start: datetime, first: int, seconds: int) -> None:
    for second in range(seconds):
        now = start + timedelta(seconds=second)
        one_process(store, first + second, now)
        store.record_scan(
            started_at=now,
            duration_ms=2.0,
            trigger="interval",
            ok=True,
            seen=300,
            matched=20,
            new=1,
            unreadable=0,
            errors=0,
        )
        if second % 60 == 0:
            store.record_health(
                now=now,
                run_id=None,
                status="healthy",
                reasons=[],
                counters={},
                errors_by_type={},
            )


def build_node(path: Path, processes: int) -> None:
    store = Store(open_for_writing(path))
    try:
        start = datetime.now(UTC) - timedelta(days=7)
        busy_minutes(store, start, 0, min(processes, 600))  # scans and snapshots too
        for n in range(600, processes):
            one_process(store, n, start + timedelta(seconds=n))
    finally:
        store.close()


def local_rows(path: Path) -> dict[str, list[dict]]:
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        rows = {
            t.name: [dict(r._mapping) for r in conn.execute(select(t))] for t in shipped_tables()
        }
    engine.dispose()
    return rows


def copy_reference(url: str, rows: dict[str, list[dict]], node_id: str) -> float:
    """PostgreSQL's COPY of the same rows into the empty central tables; seconds."""
    import psycopg
    from sqlalchemy.engine import make_url

    def plain(value):
        if isinstance(value, dict | list):
            return json.dumps(value)
        if isinstance(value, datetime):
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    prepared = {
        name: [tuple([node_id] + [plain(v) for v in row.values()]) for row in table_rows]
        for name, table_rows in rows.items()
    }
    u = make_url(url)
    with psycopg.connect(
        host=u.query["host"], port=u.query["port"], user=u.username, dbname=u.database
    ) as conn:
        started = time.perf_counter()
        with conn.cursor() as cur:
            for name, table_rows in prepared.items():
                if not table_rows:
                    continue
                columns = ", ".join(f'"{c.name}"' for c in CENTRAL_TABLES[name].columns)
                with cur.copy(f"COPY {name} ({columns}) FROM STDIN") as copy:
                    for row in table_rows:
                        copy.write_row(row)
        conn.commit()
        return time.perf_counter() - started


def timed(argv: list[str], env: dict, expect_rows: int | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1, 2) or (
        expect_rows is not None and len(json.loads(done.stdout)) != expect_rows
    ):
        raise SystemExit(f"{' '.join(argv[3:])} failed: {done.stderr or done.stdout[:200]}")
    return elapsed


def median_pair(
    a: list[str], env_a: dict, b: list[str], env_b: dict, repeat: int, rows_a=None, rows_b=None
):
    ta, tb = [], []
    for _ in range(repeat):
        ta.append(timed(a, env_a, rows_a))
        tb.append(timed(b, env_b, rows_b))
    return statistics.median(ta), statistics.median(tb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=100_000)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--overhead-processes", type=int, default=3000)
    parser.add_argument(
        "--node-db",
        type=Path,
        help="Keep the built node database here and use it again when it exists (its copy is "
        "what is shipped).",
    )
    args = parser.parse_args()

    work = Path(
        tempfile.mkdtemp(
            prefix="ffrtmp-fleet-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
        )
    )
    node_db = work / "node.db"
    if args.node_db is not None and args.node_db.exists():
        import shutil

        shutil.copyfile(args.node_db, node_db)
        print(f"using the node database {args.node_db} built before")
    else:
        started = time.perf_counter()
        build_node(node_db, args.processes)
        built_s = time.perf_counter() - started
        print(f"built {args.processes} processes of history through the store in {built_s:.0f}s")
        if args.node_db is not None:
            import sqlite3

            source = sqlite3.connect(node_db)
            source.backup(target := sqlite3.connect(args.node_db))
            target.close()
            source.close()

    server = PostgresServer.create()
    try:
        ship_url = server.admin_url(server.new_database())
        copy_url = server.admin_url(server.new_database())
        central.upgrade(ship_url)
        central.upgrade(copy_url)
        rows = local_rows(node_db)
        total = sum(map(len, rows.values()))

        # 1. shipping vs COPY
        local = open_for_writing(node_db)
        shipper = Shipper(local, ship_url)
        started = time.perf_counter()
        shipper.connect()
        shipped = shipper.ship_all()
        ship_s = time.perf_counter() - started
        copy_s = copy_reference(copy_url, rows, shipper.node.node_id)
        assert shipped == total, (shipped, total)
        print(
            f"shipping {total} rows ({args.processes} processes): {ship_s:.2f}s; COPY of the same "
            f"rows: {copy_s:.2f}s; ratio {ship_s / copy_s:.2f}x (target <= 3x)"
        )

        # 3. catch-up after a 10-minute partition of a busy node
        store = Store(local)
        # Made while nothing ships: the shipper is not called until the partition ends.
        busy_minutes(store, datetime.now(UTC) - timedelta(minutes=10), args.processes, 600)
        started = time.perf_counter()
        caught_up = shipper.ship_all()
        catch_s = time.perf_counter() - started
        print(
            f"catch-up after a 10-minute partition: {caught_up} rows in {catch_s:.2f}s to zero lag"
        )
        shipper.close()

        # 2. twenty nodes centrally
        duplicate_nodes(ship_url, args.nodes)
        with create_engine(f"sqlite:///{node_db}").connect() as conn:
            dead_local = conn.exec_driver_sql(
                "SELECT count(*) FROM retry_items WHERE state = 'dead'"
            ).scalar()
        local_env = {**os.environ, "FFRTMP_DB": str(node_db)}
        central_env = {**os.environ, "FFRTMP_DB": ship_url}
        dead = ["retries", "list", "--state", "dead", "--json"]
        fleet_s, node_s = median_pair(
            FFRTMP + dead,
            central_env,
            FFRTMP + dead,
            local_env,
            args.repeat,
            dead_local * args.nodes,
            dead_local,
        )
        print(
            f"retries list --state dead --json: {args.nodes} nodes centrally "
            f"{fleet_s * 1000:.0f} ms ({dead_local * args.nodes} rows), one node's SQLite "
            f"{node_s * 1000:.0f} ms ({dead_local} rows); ratio {fleet_s / node_s:.2f}x "
            "(target < 2x)"
        )
        fleet_s, node_s = median_pair(
            FFRTMP + ["fleet", "status", "--json"],
            central_env,
            FFRTMP + ["health", "--json"],
            local_env,
            args.repeat,
        )
        print(
            f"fleet status --json ({args.nodes} nodes) {fleet_s * 1000:.0f} ms, health --json on "
            f"one node's SQLite {node_s * 1000:.0f} ms; ratio {fleet_s / node_s:.2f}x "
            "(target < 2x)"
        )
        write_overhead(work, args.overhead_processes)
    finally:
        server.destroy()
        for f in work.iterdir():
            f.unlink()
        work.rmdir()


def write_overhead(work: Path, processes: int) -> None:
    """The store's writes with the change log on (a shipping node) and off, alternating."""
    from ffrtmp.fleet.node import ensure_node

    times: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(4):
        for shipping in (False, True):
            path = work / f"overhead-{round_}-{shipping}.db"
            engine = open_for_writing(path)
            if shipping:
                ensure_node(engine, "bench")
            store = Store(engine)
            started = time.perf_counter()
            for n in range(processes // 4):
                one_process(store, n, datetime.now(UTC))
            times[shipping].append(time.perf_counter() - started)
            store.close()
    on, off = sum(times[True]), sum(times[False])
    print(
        f"store writes of {processes} processes: {on:.2f}s with the change log, {off:.2f}s "
        f"without; ratio {on / off:.2f}x"
    )


def duplicate_nodes(url: str, nodes: int) -> None:
    """Nodes 2..N as copies of the first node's rows, made by the server itself."""
    engine = create_engine(url)
    with engine.begin() as conn:
        first = conn.execute(text("SELECT node_id FROM fleet_nodes")).scalar_one()
        for k in range(1, nodes):
            node = f"{first}-copy{k:02d}"
            conn.execute(
                text(
                    "INSERT INTO fleet_nodes (node_id, label, owner, hostname, machine_id, "
                    "ffrtmp_version, first_shipped_at, last_contact_at, last_shipped_at, "
                    "shipped_seq, pending_changes, oldest_pending_at) SELECT :node, "
                    "label || :suffix, owner, hostname, machine_id, ffrtmp_version, "
                    "first_shipped_at, last_contact_at, last_shipped_at, shipped_seq, "
                    "pending_changes, oldest_pending_at FROM fleet_nodes WHERE node_id = :first"
                ),
                dict(node=node, suffix=f"-{k:02d}", first=first),
            )
            for name, table in CENTRAL_TABLES.items():
                columns = ", ".join(f'"{c.name}"' for c in table.columns if c.name != "node_id")
                conn.execute(
                    text(
                        f"INSERT INTO {name} (node_id, {columns}) SELECT :node, {columns} "
                        f"FROM {name} WHERE node_id = :first"
                    ),
                    dict(node=node, first=first),
                )
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()


if __name__ == "__main__":
    main()
