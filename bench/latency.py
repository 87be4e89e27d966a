"""How long a new ffmpeg runs ungoverned: exec to limits in force, with events and with polling.

    .venv/bin/python bench/latency.py [--count 200] [--rate 10] [--churn 20] [--modes events,poll]

For each discovery mode, starts `ffrtmp watch` as a subprocess (a temporary database, a watch
config whose rule matches only a copy of `sleep` named ffmpeg in a temporary directory, a
unique relative --cgroup-parent, so its cgroups land below this script's own), then starts
`--count` copies at `--rate` per second while `--churn` non-matching processes per second
(`true`, `sleep 0.05`) come and go, and measures for each copy:

- exec: the kernel's own timestamp of the exec, taken from this script's subscription to the
  process-events connector (CLOCK_MONOTONIC, the clock of time.monotonic_ns()). It is the exact
  moment the new program started, independent of when Popen returned or this script ran. The
  Popen return time is the fallback when the connector cannot be opened (then the figures
  are slightly low: Popen returns a little after the exec).
- in force: the first moment a poller (one thread, sweeping all pending pids about every
  millisecond) reads from /proc/<pid>/cgroup that the process sits in its job cgroup in every
  hierarchy. The daemon writes the limits before it moves the pid, so from that moment the
  limits apply; they are read back from the cgroup files afterwards and checked.

Prints p50/p99/max per mode and the ratio. Kills and reaps every process it started, stops the
daemon with SIGTERM, removes the cgroup folders it made, whatever happens.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ffrtmp.durations import parse_duration

CGROUP_MOUNT = Path("/sys/fs/cgroup")
CGROUP_CONTROLLERS = ("cpu", "cpuacct", "memory")  # the v1 hierarchies the daemon uses here
CPU_QUOTA_PERCENT = 50
MEMORY_LIMIT_MB = 256
EVENTS_TARGET_P99_MS = 50.0
MATCHING_SLEEP_SECONDS = "600"
DAEMON_START_TIMEOUT = 30.0
EVENTS_GRACE_SECONDS = 5.0  # how long after the last start a copy may still be attached


# -- the daemon under test -------------------------------------------------------------------


def write_watch_config(directory: Path, exe: Path) -> Path:
    path = directory / "watch.yaml"
    path.write_text(
        f"target_commands: [ffmpeg]\ncommands:\n  ffmpeg:\n    match: {{exe: '{exe}'}}\n"
    )
    return path


def scans_recorded(db_path: Path) -> int:
    if not db_path.exists():
        return 0
    try:
        con = sqlite3.connect(db_path, timeout=1)
        try:
            return con.execute("SELECT count(*) FROM scans").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0  # still being created


class WatchDaemon:
    """`ffrtmp watch` in a subprocess; stopped with SIGTERM (SIGKILL if it will not stop)."""

    def __init__(self, workdir: Path, name: str, args: list[str]) -> None:
        self.db_path = workdir / f"{name}.db"
        self.log_path = workdir / f"{name}.log"
        self.args = args
        self.process: subprocess.Popen | None = None

    def start(self) -> int:
        argv = [sys.executable, "-m", "ffrtmp.cli", "watch", "--db", str(self.db_path), *self.args]
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + DAEMON_START_TIMEOUT
        while scans_recorded(self.db_path) == 0:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the daemon exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not scan within {DAEMON_START_TIMEOUT} s")
            time.sleep(0.05)
        return self.process.pid

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return ""


def own_cgroup_dirs(parent_name: str) -> list[Path]:
    """Where a relative --cgroup-parent lands: below this process's cgroup in each hierarchy."""
    dirs = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in CGROUP_CONTROLLERS:
                if controller in controllers.split(",") and (CGROUP_MOUNT / controller).is_dir():
                    dirs.append(CGROUP_MOUNT / controller / path.lstrip("/") / parent_name)
    return dirs


def remove_cgroup_tree(directory: Path) -> None:
    """rmdir bottom-up; only used on a parent whose unique name this script chose."""
    if not directory.is_dir():
        return
    for child in directory.iterdir():
        if child.is_dir():
            remove_cgroup_tree(child)
    try:
        directory.rmdir()
    except OSError as exc:
        print(f"could not remove {directory}: {exc}", file=sys.stderr)


def cgroups_usable() -> str | None:
    if os.geteuid() != 0:
        return "bench/latency.py needs root (it creates cgroups and reads process events)."
    if not os.access(CGROUP_MOUNT / "cpu", os.W_OK):
        return "bench/latency.py needs writable cgroup v1 hierarchies under /sys/fs/cgroup."
    return None


def unique_parent(label: str) -> str:
    return f"ffrtmp-bench-{label}-{uuid.uuid4().hex[:8]}"


class Children:
    """Every process this script starts; close() kills the living by pid and reaps them all."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []

    def start(self, argv: list[str]) -> subprocess.Popen:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.processes.append(process)
        return process

    def reap_finished(self) -> None:
        self.processes = [p for p in self.processes if p.poll() is None]

    def close(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                try:
                    os.kill(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for process in self.processes:
            process.wait()
        self.processes = []


# -- measuring -------------------------------------------------------------------------------


class ExecClock:
    """The kernel's exec timestamps, from this script's own process-events subscription."""

    def __init__(self) -> None:
        self.listener = None
        self.exec_ns: dict[int, int] = {}
        try:
            from ffrtmp.proc_events import ProcEventListener

            self.listener = ProcEventListener().open()
        except OSError as exc:
            print(f"no kernel exec timestamps ({exc}); timing from Popen's return instead")

    @property
    def source(self) -> str:
        return "kernel exec event" if self.listener else "Popen return"

    def read(self) -> None:
        if self.listener is None:
            return
        from ffrtmp.proc_events import ExecEvent, Overflow

        for event in self.listener.read_events():
            if isinstance(event, ExecEvent):
                self.exec_ns[event.tgid] = event.timestamp_ns
            elif isinstance(event, Overflow):
                print("warning: this script's own event socket overflowed", file=sys.stderr)

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()


@dataclass
class Pending:
    pid: int
    popen_start_ns: int
    popen_return_ns: int


@dataclass
class Measured:
    pid: int
    latency_ns: int
    cgroup_paths: dict[str, str]


def read_cgroups(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            text = f.read()
    except OSError:
        return out
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            if controller in CGROUP_CONTROLLERS:
                out[controller] = path
    return out


@dataclass
class Poller:
    """One thread: drains exec timestamps, sweeps pending pids for their job cgroups."""

    parent_name: str
    clock: ExecClock
    pending: dict[int, Pending] = field(default_factory=dict)
    measured: list[Measured] = field(default_factory=list)
    clock_fallbacks: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def add(self, item: Pending) -> None:
        with self.lock:
            self.pending[item.pid] = item

    def outstanding(self) -> int:
        with self.lock:
            return len(self.pending)

    def run(self) -> None:
        while not self.stop.is_set():
            self.clock.read()
            with self.lock:
                items = list(self.pending.values())
            for item in items:
                groups = read_cgroups(item.pid)
                if groups and all(
                    path.rsplit("/", 2)[-2:-1] == [self.parent_name] for path in groups.values()
                ):
                    seen_ns = time.monotonic_ns()
                    self.clock.read()  # the exec event may still be queued
                    exec_ns = self.clock.exec_ns.get(item.pid)
                    if exec_ns is None or exec_ns < item.popen_start_ns:
                        exec_ns = item.popen_return_ns
                        self.clock_fallbacks += 1
                    with self.lock:
                        del self.pending[item.pid]
                    self.measured.append(Measured(item.pid, seen_ns - exec_ns, groups))
            time.sleep(0.001)


@dataclass
class ModeResult:
    mode: str
    started: int
    latencies_ms: list[float]
    wrong_limits: int
    clock_fallbacks: int

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    def line(self) -> str:
        got = len(self.latencies_ms)
        head = f"{self.mode:>6}: {got}/{self.started} in their job cgroup"
        if not got:
            return head
        return (
            f"{head}; exec -> limits in force: p50 {fmt_ms(self.percentile(50))}, "
            f"p99 {fmt_ms(self.percentile(99))}, max {fmt_ms(max(self.latencies_ms))}"
        )


def fmt_ms(ms: float) -> str:
    return f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def limits_read_back(groups: dict[str, str]) -> bool:
    cpu = CGROUP_MOUNT / "cpu" / groups["cpu"].lstrip("/")
    memory = CGROUP_MOUNT / "memory" / groups["memory"].lstrip("/")
    try:
        quota = (cpu / "cpu.cfs_quota_us").read_text().strip()
        period = (cpu / "cpu.cfs_period_us").read_text().strip()
        limit = (memory / "memory.limit_in_bytes").read_text().strip()
    except OSError:
        return False
    return (
        int(quota) * 100 == CPU_QUOTA_PERCENT * int(period)
        and int(limit) == MEMORY_LIMIT_MB * 1024 * 1024
    )


def run_mode(
    mode: str, args: argparse.Namespace, workdir: Path, ffmpeg: Path, clock: ExecClock
) -> ModeResult:
    parent = unique_parent(mode)
    daemon = WatchDaemon(
        workdir,
        mode,
        [
            "--watch-config",
            str(write_watch_config(workdir, ffmpeg)),
            "--discovery",
            mode,
            "--cgroup-parent",
            parent,
            "--cpu-quota",
            str(CPU_QUOTA_PERCENT),
            "--memory-limit",
            str(MEMORY_LIMIT_MB),
            *(["--scan-interval", args.scan_interval] if args.scan_interval else []),
        ],
    )
    matching, churn = Children(), Children()
    poller = Poller(parent, clock)
    thread = threading.Thread(target=poller.run, name="cgroup-poller", daemon=True)
    try:
        daemon.start()
        scan_interval = parse_duration(scan_interval_of(daemon.db_path))
        thread.start()
        began = time.monotonic()
        churn_argv = (["true"], ["sleep", "0.05"])
        next_match, next_churn, churned = began, began, 0
        while len(matching.processes) < args.count:
            now = time.monotonic()
            if now >= next_match:
                start_ns = time.monotonic_ns()
                process = matching.start([str(ffmpeg), MATCHING_SLEEP_SECONDS])
                poller.add(Pending(process.pid, start_ns, time.monotonic_ns()))
                next_match += 1 / args.rate
            if args.churn and now >= next_churn:
                churn.start(churn_argv[churned % 2])
                churned += 1
                next_churn += 1 / args.churn
                churn.reap_finished()
            wake = min(next_match, next_churn if args.churn else next_match)
            time.sleep(max(0.0, wake - time.monotonic()))
        grace = EVENTS_GRACE_SECONDS if mode == "events" else scan_interval + EVENTS_GRACE_SECONDS
        deadline = time.monotonic() + grace
        while poller.outstanding() and time.monotonic() < deadline:
            churn.reap_finished()
            time.sleep(0.05)
        poller.stop.set()
        thread.join()
        wrong = sum(not limits_read_back(m.cgroup_paths) for m in poller.measured)
        print(
            f"{mode}: {len(matching.processes)} matching and {churned} churn processes in "
            f"{time.monotonic() - began:.1f} s; full scan every {scan_interval:g} s"
        )
        return ModeResult(
            mode,
            args.count,
            [m.latency_ns / 1e6 for m in poller.measured],
            wrong,
            poller.clock_fallbacks,
        )
    finally:
        poller.stop.set()
        if thread.is_alive():
            thread.join()
        matching.close()
        churn.close()
        returncode = daemon.stop()
        if returncode not in (0, None):
            print(f"{mode}: the daemon stopped with {returncode}:\n{daemon.log_tail()}")
        for directory in own_cgroup_dirs(parent):
            remove_cgroup_tree(directory)


def scan_interval_of(db_path: Path) -> str:
    con = sqlite3.connect(db_path, timeout=5)
    try:
        (config,) = con.execute(
            "SELECT json_extract(config, '$.scan_interval') FROM daemon_runs"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()
    finally:
        con.close()
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="matching processes per mode")
    parser.add_argument("--rate", type=float, default=10.0, help="matching starts per second")
    parser.add_argument(
        "--churn", type=float, default=20.0, help="non-matching starts per second (0: none)"
    )
    parser.add_argument("--modes", default="events,poll", help="comma-separated: events, poll")
    parser.add_argument("--scan-interval", help="passed to the daemon (default: its own, 10s)")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.count < 1 or args.rate <= 0 or args.churn < 0:
        parser.error("--count and --rate must be positive, --churn at least 0")
    if not modes or set(modes) - {"events", "poll"}:
        parser.error("--modes takes events, poll or both")
    problem = cgroups_usable()
    if problem:
        print(problem, file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still runs the cleanups
    workdir = Path(tempfile.mkdtemp(prefix="ffrtmp-latency-"))
    clock = ExecClock()
    results: dict[str, ModeResult] = {}
    try:
        ffmpeg = workdir / "bin" / "ffmpeg"
        ffmpeg.parent.mkdir()
        shutil.copy2(shutil.which("sleep") or "/bin/sleep", ffmpeg)
        for mode in modes:
            results[mode] = run_mode(mode, args, workdir, ffmpeg, clock)
    finally:
        clock.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"exec time from: {clock.source}")
    ok = True
    for result in results.values():
        print(result.line())
        if result.clock_fallbacks:
            print(f"        ({result.clock_fallbacks} timed from Popen's return: no exec event)")
        if result.wrong_limits:
            print(f"        {result.wrong_limits} cgroups did not read back the limits")
        ok = ok and len(result.latencies_ms) == result.started and not result.wrong_limits
    events, poll = results.get("events"), results.get("poll")
    if events and poll and events.latencies_ms and poll.latencies_ms:
        print(
            f"ratio poll/events: p50 x{poll.percentile(50) / events.percentile(50):.0f}, "
            f"p99 x{poll.percentile(99) / events.percentile(99):.0f}"
        )
    if events and events.latencies_ms:
        met = events.percentile(99) <= EVENTS_TARGET_P99_MS
        print(
            f"target p99 <= {EVENTS_TARGET_P99_MS:g} ms with events: {'met' if met else 'MISSED'}"
        )
        ok = ok and met
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
