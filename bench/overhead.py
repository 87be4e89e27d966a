"""What `ffrtmp watch` costs while nothing needs doing: CPU and peak memory, events vs polling.

    .venv/bin/python bench/overhead.py [--seconds 60] [--processes 2000] [--modes events,poll]

Spawns `--processes` idle, non-matching sleepers, then for each discovery mode runs the daemon
(its default 10 s scan interval, a watch config that matches only an ffmpeg copy that never
runs, a unique relative --cgroup-parent) for `--seconds` after its start-up scan, and reports
its CPU time over that window (utime + stime from /proc/<pid>/stat) as a percentage of one
core, its peak RSS (VmHWM), the full scans it wrote, and the exec events the whole machine
produced meanwhile (other people's processes cost the event-driven daemon a look each, so on
a busy machine the figure includes them). Kills and reaps everything it started.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from latency import (
    Children,
    WatchDaemon,
    cgroups_usable,
    own_cgroup_dirs,
    remove_cgroup_tree,
    unique_parent,
    write_watch_config,
)

EVENTS_TARGET_CPU_PERCENT = 1.0
HEADROOM_PIDS = 500
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def peak_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class ExecCounter:
    """Counts the machine's exec events, for the context of the figures."""

    def __init__(self) -> None:
        from ffrtmp.proc_events import ProcEventListener

        self.listener = ProcEventListener().open()
        self.execs = 0

    def drain(self) -> None:
        from ffrtmp.proc_events import ExecEvent

        self.execs += sum(isinstance(e, ExecEvent) for e in self.listener.read_events())

    def close(self) -> None:
        self.listener.close()


@dataclass
class Overhead:
    mode: str
    seconds: float
    cpu_s: float
    peak_rss_mb: float
    scans: int
    machine_execs: int

    def line(self) -> str:
        return (
            f"{self.mode:>6}: {self.cpu_s:.2f} s CPU in {self.seconds:.0f} s = "
            f"{100 * self.cpu_s / self.seconds:.2f}% of one core; peak RSS "
            f"{self.peak_rss_mb:.1f} MB; {self.scans} full scans; "
            f"{self.machine_execs / self.seconds:.1f} execs/s on the machine"
        )


def scan_count(db_path: Path) -> int:
    con = sqlite3.connect(db_path, timeout=5)
    try:
        return con.execute("SELECT count(*) FROM scans").fetchone()[0]
    finally:
        con.close()


def measure(mode: str, seconds: float, workdir: Path, ffmpeg: Path) -> Overhead:
    parent = unique_parent(f"overhead-{mode}")
    config = write_watch_config(workdir, ffmpeg)
    daemon = WatchDaemon(
        workdir,
        f"overhead-{mode}",
        [
            "--watch-config",
            str(config),
            "--discovery",
            mode,
            "--cgroup-parent",
            parent,
        ],
    )
    counter = ExecCounter()
    try:
        pid = daemon.start()
        counter.drain()
        counter.execs = 0
        scans_before = scan_count(daemon.db_path)
        cpu_before = cpu_seconds(pid)
        began = time.monotonic()
        while (left := began + seconds - time.monotonic()) > 0:
            time.sleep(min(left, 0.5))
            counter.drain()
        elapsed = time.monotonic() - began
        cpu = cpu_seconds(pid) - cpu_before
        rss_mb = peak_rss_kb(pid) / 1024
        scans = scan_count(daemon.db_path) - scans_before
        return Overhead(mode, elapsed, cpu, rss_mb, scans, counter.execs)
    finally:
        counter.close()
        returncode = daemon.stop()
        if returncode not in (0, None):
            print(f"{mode}: the daemon stopped with {returncode}:\n{daemon.log_tail()}")
        for directory in own_cgroup_dirs(parent):
            remove_cgroup_tree(directory)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window per mode")
    parser.add_argument("--processes", type=int, default=2000, help="idle sleepers to add")
    parser.add_argument("--modes", default="events,poll", help="comma-separated: events, poll")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.seconds <= 0 or args.processes < 0:
        parser.error("--seconds must be positive and --processes at least 0")
    if not modes or set(modes) - {"events", "poll"}:
        parser.error("--modes takes events, poll or both")
    problem = cgroups_usable()
    if problem:
        print(problem.replace("latency", "overhead"), file=sys.stderr)
        return 2
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    running = sum(1 for name in os.listdir("/proc") if name.isdigit())
    if running + args.processes + HEADROOM_PIDS > pid_max:
        print(
            f"{args.processes} more processes would leave too few pids "
            f"({running} run, pid_max {pid_max}).",
            file=sys.stderr,
        )
        return 2

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still runs the cleanups
    workdir = Path(tempfile.mkdtemp(prefix="ffrtmp-overhead-"))
    sleepers = Children()
    results = []
    try:
        ffmpeg = workdir / "bin" / "ffmpeg"
        ffmpeg.parent.mkdir()
        shutil.copy2(shutil.which("sleep") or "/bin/sleep", ffmpeg)
        started = time.monotonic()
        for i in range(args.processes):
            sleepers.start(["sleep", f"3600.{i:05d}"])
        table = sum(1 for name in os.listdir("/proc") if name.isdigit())
        print(
            f"spawned {args.processes} idle processes in {time.monotonic() - started:.1f} s; "
            f"{table} in the process table"
        )
        for mode in modes:
            results.append(measure(mode, args.seconds, workdir, ffmpeg))
            print(results[-1].line(), flush=True)
    finally:
        sleepers.close()
        shutil.rmtree(workdir, ignore_errors=True)
    events = next((r for r in results if r.mode == "events"), None)
    if events is None:
        return 0
    percent = 100 * events.cpu_s / events.seconds
    met = percent < EVENTS_TARGET_CPU_PERCENT
    print(
        f"target below {EVENTS_TARGET_CPU_PERCENT:g}% of one core with events: "
        f"{'met' if met else 'MISSED'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
