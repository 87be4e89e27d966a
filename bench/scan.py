"""Time one Scanner.scan() against `pgrep -f` on the same large process table.

    .venv/bin/python bench/scan.py [--processes 2000] [--matching 10] [--repeat 15]

Spawns `--processes` sleepers with distinct arguments, `--matching` of them a copy of sleep
named ffmpeg in a temporary directory; times the scan and pgrep alternately; checks that both
found exactly the ffmpeg copies; kills and reaps everything it spawned, whatever happens.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ffrtmp.defaults import TARGET_COMMANDS
from ffrtmp.matching import rules_for_commands
from ffrtmp.scanner import Scanner

SLEEP_SECONDS = 600
HEADROOM_PIDS = 500  # left free for everything else on the machine while the bench runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2000, help="size of the table to add")
    parser.add_argument("--matching", type=int, default=10, help="how many of them are ffmpeg")
    parser.add_argument("--repeat", type=int, default=15, help="timed rounds of each")
    args = parser.parse_args()
    if not 0 < args.matching <= args.processes:
        parser.error("--matching must be between 1 and --processes")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    problem = capacity_problem(args.processes)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    sleep = shutil.which("sleep")
    if sleep is None or shutil.which("pgrep") is None:
        print("bench/scan.py needs `sleep` and `pgrep` on PATH.", file=sys.stderr)
        return 2

    # A SIGTERM must still reach the cleanup below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="ffrtmp-bench-"))
    spawned: list[subprocess.Popen] = []
    try:
        ffmpeg = workdir / "ffmpeg"
        shutil.copy2(sleep, ffmpeg)
        started = time.monotonic()
        matching = spawn_table(spawned, sleep, str(ffmpeg), args.processes, args.matching)
        print(f"spawned {len(spawned)} processes in {time.monotonic() - started:.1f} s")
        # The daemon's stand-in: an unrelated process, so every match walks its whole ppid
        # chain, as it does in the daemon (the sleepers are this script's children, not its).
        daemon = spawned[-1].pid
        ours = {process.pid for process in spawned}
        return run_rounds(str(ffmpeg), matching, ours, daemon, args.repeat)
    finally:
        for process in spawned:
            try:
                os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for process in spawned:
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"killed and reaped {len(spawned)} processes")


def capacity_problem(wanted: int) -> str | None:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    running = sum(1 for name in os.listdir("/proc") if name.isdigit())
    if running + wanted + HEADROOM_PIDS > pid_max:
        return (
            f"{wanted} more processes would leave too few pids: {running} run, pid_max {pid_max}."
        )
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    if os.geteuid() != 0 and soft != resource.RLIM_INFINITY and running + wanted >= soft:
        return f"{wanted} more processes exceed `ulimit -u` ({soft})."
    return None


def spawn_table(
    spawned: list[subprocess.Popen], sleep: str, ffmpeg: str, total: int, matching: int
) -> set[int]:
    # Spread the matches through the table instead of bunching them at its end.
    every = total // matching
    matching_pids: set[int] = set()
    with open(os.devnull, "rb+") as devnull:
        for i in range(total + 1):  # one extra: the daemon's stand-in
            is_match = i < total and i % every == 0 and len(matching_pids) < matching
            argv = [ffmpeg if is_match else sleep, f"{SLEEP_SECONDS}.{i:05d}"]
            process = subprocess.Popen(argv, stdin=devnull, stdout=devnull, stderr=devnull)
            spawned.append(process)
            if is_match:
                matching_pids.add(process.pid)
    # Popen returns before the new command line is visible: wait for every one of them.
    deadline = time.monotonic() + 30
    for process in spawned:
        expected = os.fsencode(process.args[0]) + b"\0"
        while not read_cmdline(process.pid).startswith(expected):
            if time.monotonic() > deadline:
                raise RuntimeError(f"pid {process.pid} did not exec {process.args[0]}")
            time.sleep(0.001)
    return matching_pids


def read_cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def run_rounds(ffmpeg: str, matching: set[int], ours: set[int], daemon: int, repeat: int) -> int:
    scanner = Scanner(rules_for_commands(TARGET_COMMANDS), self_pid=daemon)
    pattern = f"^{ffmpeg} "

    def timed_scan() -> tuple[float, set[int], int]:
        started = time.perf_counter()
        result = scanner.scan()
        return time.perf_counter() - started, {c.pid for c in result.matched}, result.seen

    def timed_pgrep() -> tuple[float, set[int]]:
        started = time.perf_counter()
        done = subprocess.run(["pgrep", "-f", pattern], capture_output=True, check=False)
        elapsed = time.perf_counter() - started
        return elapsed, {int(line) for line in done.stdout.split()}

    timed_scan(), timed_pgrep()  # warm the page cache and the pwd cache
    scan_times, pgrep_times = [], []
    ok = True
    seen = 0
    for round_number in range(repeat):
        # Alternate which goes first so neither always runs on a cache the other warmed.
        order = (0, 1) if round_number % 2 == 0 else (1, 0)
        for which in order:
            if which == 0:
                elapsed, found, seen = timed_scan()
                scan_times.append(elapsed)
                # Another program's ffmpeg may run on this machine too: among the processes
                # spawned here, the scan must find the ffmpeg copies and nothing else.
                if found & ours != matching:
                    print(f"scan found {sorted(found & ours)}, expected {sorted(matching)}")
                    ok = False
            else:
                elapsed, found = timed_pgrep()
                pgrep_times.append(elapsed)
                if found != matching:
                    print(f"pgrep found {sorted(found)}, expected {sorted(matching)}")
                    ok = False
    _, found, _ = timed_scan()
    foreign = found - ours
    scan_median = statistics.median(scan_times)
    pgrep_median = statistics.median(pgrep_times)
    print(f"table: {seen} processes, {len(matching)} ours matching; rounds: {repeat}")
    if foreign:
        print(f"also matched, not spawned by this bench: {sorted(foreign)}")
    print(f"scan   median {scan_median * 1000:7.1f} ms  (min {min(scan_times) * 1000:.1f})")
    print(f"pgrep  median {pgrep_median * 1000:7.1f} ms  (min {min(pgrep_times) * 1000:.1f})")
    print(f"ratio scan/pgrep: {scan_median / pgrep_median:.2f} (target at most 0.5)")
    print("scan found exactly the ffmpeg copies" if ok else "MISMATCH: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
