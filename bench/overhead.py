"""What `ffrtmp watch` costs while nothing needs doing: CPU and peak memory, events vs polling.

    .venv/bin/python bench/overhead.py [--seconds 60] [--processes 2000] [--modes events,poll]

Spawns `--processes` idle, non-matching sleepers, then for each discovery mode runs the daemon
(its default 10 s scan interval, a watch config that matches only an ffmpeg copy that never
runs, a unique relative --cgroup-parent) for `--seconds` after its start-up scan, and reports
its CPU time over that window (utime + stime from /proc/<pid>/stat) as a percentage of one
core, its peak RSS (VmHWM), the full scans it wrote, and the exec events the whole machine
produced meanwhile (other people's processes cost the event-driven daemon a look each, so on
a busy machine the figure includes them). Kills and reaps everything it started.

    .venv/bin/python bench/overhead.py --governed 200 [--usage-interval 10] [--seconds 60]

With `--governed N` it measures what usage while running costs instead: it runs the daemon
twice (polling, so the machine's exec events do not blur the figures), on N fresh sleeping
processes named ffmpeg that it governs (each in its job cgroup), first with usage sampling
off (`--usage-interval 0`, the reference), then on, and reports the idle CPU of each after
all N are attached, the difference in percent of one core (target: below 1), the ratio
on/off, both measured in this invocation, and the CPU of the sampling thread itself.
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
USAGE_TARGET_CPU_PERCENT = 1.0  # what sampling N governed jobs may add, in % of one core
HEADROOM_PIDS = 500
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def thread_cpu_seconds(pid: int) -> float:
    """CPU time of the process's threads other than the main one (the usage sampler's)."""
    total = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        if int(tid) == pid:
            continue
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


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
    thread_cpu_s: float = 0.0  # of the threads besides the main one

    def line(self) -> str:
        return (
            f"{self.mode:>9}: {self.cpu_s:.2f} s CPU in {self.seconds:.0f} s = "
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


def attached_count(db_path: Path) -> int:
    con = sqlite3.connect(db_path, timeout=5)
    try:
        return con.execute("SELECT count(*) FROM processes WHERE state = 'attached'").fetchone()[0]
    finally:
        con.close()


def sampled_count(db_path: Path) -> int:
    con = sqlite3.connect(db_path, timeout=5)
    try:
        query = "SELECT count(*) FROM processes WHERE usage_sampled_at IS NOT NULL"
        return con.execute(query).fetchone()[0]
    finally:
        con.close()


def measure(
    mode: str,
    seconds: float,
    workdir: Path,
    ffmpeg: Path,
    *,
    name: str | None = None,
    extra_args: tuple[str, ...] = (),
    governed: int = 0,
) -> Overhead:
    """The daemon's CPU over `seconds`; with `governed`, after that many processes named
    ffmpeg (started here, ended before the cgroups are removed) are all attached."""
    name = name or mode
    parent = unique_parent(f"overhead-{name}")
    config = write_watch_config(workdir, ffmpeg)
    daemon = WatchDaemon(
        workdir,
        f"overhead-{name}",
        [
            "--watch-config",
            str(config),
            "--discovery",
            mode,
            "--cgroup-parent",
            parent,
            *extra_args,
        ],
    )
    jobs = Children()
    counter = ExecCounter()
    try:
        for _ in range(governed):
            jobs.start([str(ffmpeg), "3600"])
        pid = daemon.start()
        deadline = time.monotonic() + 300
        while governed and attached_count(daemon.db_path) < governed:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: not all {governed} jobs were attached in 300 s")
            time.sleep(0.2)
        counter.drain()
        counter.execs = 0
        scans_before = scan_count(daemon.db_path)
        cpu_before = cpu_seconds(pid)
        threads_before = thread_cpu_seconds(pid)
        began = time.monotonic()
        while (left := began + seconds - time.monotonic()) > 0:
            time.sleep(min(left, 0.5))
            counter.drain()
        elapsed = time.monotonic() - began
        cpu = cpu_seconds(pid) - cpu_before
        threads = thread_cpu_seconds(pid) - threads_before
        rss_mb = peak_rss_kb(pid) / 1024
        scans = scan_count(daemon.db_path) - scans_before
        if governed:
            print(f"{name}: {sampled_count(daemon.db_path)} of {governed} rows carry a sample")
        return Overhead(name, elapsed, cpu, rss_mb, scans, counter.execs, threads)
    finally:
        counter.close()
        returncode = daemon.stop()
        if returncode not in (0, None):
            print(f"{name}: the daemon stopped with {returncode}:\n{daemon.log_tail()}")
        jobs.close()  # a cgroup with processes in it cannot be removed
        for directory in own_cgroup_dirs(parent):
            remove_cgroup_tree(directory)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window per mode")
    parser.add_argument("--processes", type=int, default=2000, help="idle sleepers to add")
    parser.add_argument("--modes", default="events,poll", help="comma-separated: events, poll")
    parser.add_argument(
        "--governed",
        type=int,
        default=0,
        help="measure usage sampling off vs on with this many governed jobs instead",
    )
    parser.add_argument(
        "--usage-interval", type=float, default=10.0, help="seconds between usage samples"
    )
    args = parser.parse_args()
    if args.governed < 0 or args.usage_interval <= 0:
        parser.error("--governed must be at least 0 and --usage-interval positive")
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
        if args.governed:
            return compare_usage_sampling(args, workdir, ffmpeg)
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


def compare_usage_sampling(args: argparse.Namespace, workdir: Path, ffmpeg: Path) -> int:
    """Usage sampling off (the reference) and on, each with `--governed` fresh jobs."""
    runs = []
    for name, interval in (("usage-off", 0.0), ("usage-on", args.usage_interval)):
        # Polling, so that the exec events of the rest of the machine (which vary from one
        # run to the next) do not drown the difference; sampling does not depend on it.
        run = measure(
            "poll",
            args.seconds,
            workdir,
            ffmpeg,
            name=name,
            extra_args=("--usage-interval", f"{interval:g}"),
            governed=args.governed,
        )
        runs.append(run)
        print(run.line(), flush=True)
    thread = 100 * runs[1].thread_cpu_s / runs[1].seconds
    print(f"the usage thread itself: {runs[1].thread_cpu_s:.2f} s CPU = {thread:.2f}% of one core")
    off, on = (100 * r.cpu_s / r.seconds for r in runs)
    added = on - off
    ratio = f"{on / off:.2f}x" if off > 0 else "n/a (the reference used no measurable CPU)"
    met = added < USAGE_TARGET_CPU_PERCENT
    print(
        f"usage sampling every {args.usage_interval:g} s of {args.governed} governed jobs adds "
        f"{added:.2f}% of one core (on {on:.2f}% / off {off:.2f}% = {ratio}); target below "
        f"{USAGE_TARGET_CPU_PERCENT:g}%: {'met' if met else 'MISSED'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
