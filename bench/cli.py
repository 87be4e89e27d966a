"""Time `ffrtmp retries list --json` on a database with a large history against the bare cost of
importing what it needs (`python -c "import sqlalchemy.orm, click"`).

    .venv/bin/python bench/cli.py [--rows 100000] [--repeat 15] [--db PATH]

Builds the database through the real schema (ffrtmp.database.open_for_writing) with bulk inserts:
`--rows` rows across processes, process events, error events, scans, retry items and health
snapshots, of which 60 retry items pending and 40 dead. Then runs the two commands alternately,
checks the command printed the 100 expected items, and prints both medians and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from ffrtmp.database import open_for_writing
from ffrtmp.models import ErrorEvent, HealthSnapshot, Process, ProcessEvent, RetryItem, Scan

PENDING, DEAD = 60, 40
TARGET_RATIO = 1.3


def build(path: Path, rows: int) -> dict[str, int]:
    """Fill a new database with `rows` rows of history; returns the count per table."""
    share = {"processes": 0.2, "events": 0.5, "errors": 0.15, "scans": 0.1, "retries": 0.04}
    n = {k: int(rows * v) for k, v in share.items()}
    n["snapshots"] = rows - sum(n.values())
    engine = open_for_writing(path)
    start = datetime.now(UTC) - timedelta(days=10)
    boot = "00000000-0000-0000-0000-000000000000"

    def at(i: int) -> datetime:
        return start + timedelta(seconds=i * 5)

    with engine.begin() as conn:
        conn.execute(
            insert(Process),
            [
                dict(
                    boot_id=boot,
                    pid=1000 + i,
                    start_ticks=i,
                    started_at=at(i),
                    command="ffmpeg",
                    argv=["ffmpeg", "-i", f"rtmp://in/{i}"],
                    job_id=f"auto-ffmpeg-{1000 + i}",
                    state="exited" if i >= PENDING + DEAD else "retrying",
                    discovered_at=at(i),
                    last_seen_at=at(i + 60),
                    exited_at=at(i + 60) if i >= PENDING + DEAD else None,
                    exit_code=0,
                )
                for i in range(n["processes"])
            ],
        )
        conn.execute(
            insert(ProcessEvent),
            [
                dict(
                    process_id=1 + i % n["processes"],
                    occurred_at=at(i),
                    kind="discovered",
                    details={"rule": "ffmpeg"},
                )
                for i in range(n["events"])
            ],
        )
        conn.execute(
            insert(ErrorEvent),
            [
                dict(
                    occurred_at=at(i),
                    operation="attach",
                    process_id=1 + i % n["processes"],
                    pid=1000 + i % n["processes"],
                    error_type="transient",
                    retryable=True,
                    errno=11,
                    errno_name="EAGAIN",
                    exception="BlockingIOError",
                    message="Resource temporarily unavailable",
                )
                for i in range(n["errors"])
            ],
        )
        conn.execute(
            insert(Scan),
            [
                dict(
                    started_at=at(i),
                    duration_ms=4.2,
                    trigger="poll",
                    ok=True,
                    seen=300,
                    matched=3,
                    new=0,
                    unreadable=0,
                    errors=0,
                )
                for i in range(n["scans"])
            ],
        )
        conn.execute(
            insert(RetryItem),
            [
                dict(
                    process_id=1 + i,
                    operation="attach",
                    state="pending"
                    if i < PENDING
                    else "dead"
                    if i < PENDING + DEAD
                    else "succeeded",
                    attempt=1,
                    max_attempts=3,
                    created_at=at(i),
                    updated_at=at(i),
                    next_attempt_at=at(i + 1) if i < PENDING else None,
                    last_attempt_at=at(i),
                    last_error="EAGAIN: try again",
                    last_error_type="transient",
                )
                for i in range(n["retries"])
            ],
        )
        conn.execute(
            insert(HealthSnapshot),
            [
                dict(
                    taken_at=at(i),
                    status="healthy",
                    reasons=[],
                    consecutive_scan_failures=0,
                    consecutive_attach_failures=0,
                    total_scan_failures=0,
                    total_attach_failures=0,
                    retry_pending=PENDING,
                    dead_letters=DEAD,
                    errors_by_type={"transient": i},
                )
                for i in range(n["snapshots"])
            ],
        )
    engine.dispose()
    return n


def timed(argv: list[str]) -> tuple[float, bytes]:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, check=True)
    return time.perf_counter() - started, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="history rows to insert")
    parser.add_argument("--repeat", type=int, default=15, help="timed runs of each command")
    parser.add_argument("--db", type=Path, help="build here instead of a temporary directory")
    args = parser.parse_args()
    if args.rows < 1000 or args.repeat < 1:
        parser.error("--rows must be at least 1000 and --repeat at least 1")
    with tempfile.TemporaryDirectory(prefix="ffrtmp-bench-") as tmp:
        path = args.db or Path(tmp) / "bench.db"
        if path.exists():
            parser.error(f"{path} exists; give a new path")
        started = time.perf_counter()
        counts = build(path, args.rows)
        print(
            f"built {path} with {sum(counts.values())} rows {counts} "
            f"in {time.perf_counter() - started:.1f}s"
        )
        script = Path(sys.executable).with_name("ffrtmp")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "ffrtmp.cli"]
        command += ["retries", "list", "--json", "--db", str(path)]
        baseline = [sys.executable, "-c", "import sqlalchemy.orm, click"]
        env_note = os.environ.get("PYTHONDONTWRITEBYTECODE")
        timed(command), timed(baseline)  # warm the page cache and the bytecode caches
        ours, base = [], []
        for _ in range(args.repeat):
            seconds, out = timed(command)
            ours.append(seconds)
            base.append(timed(baseline)[0])
        items = json.loads(out)
        states = sorted({i["state"] for i in items})
        if len(items) != PENDING + DEAD or states != ["dead", "pending"]:
            print(f"unexpected output: {len(items)} items in states {states}", file=sys.stderr)
            return 1
    ours_median, base_median = statistics.median(ours), statistics.median(base)
    ratio = ours_median / base_median
    print(f"ffrtmp retries list --json: median {ours_median * 1000:.1f} ms over {args.repeat} runs")
    print(
        f"import sqlalchemy.orm, click: median {base_median * 1000:.1f} ms over {args.repeat} runs"
    )
    print(
        f"ratio {ratio:.2f} (target at most {TARGET_RATIO})"
        + (" [PYTHONDONTWRITEBYTECODE set]" if env_note else "")
    )
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
