"""How long a new ffmpeg runs ungoverned, and how much of that is ffrtmp's and not the kernel's.

    .venv/bin/python bench/latency.py [--trials 200] [--load] [--gap 0.1]

One invocation measures, trial by trial and alternating which goes first:

- daemon: `ffrtmp watch --discovery events` runs as a subprocess (a temporary database, a rule
  matching only a copy of `sleep` named ffmpeg, a unique relative --cgroup-parent so its
  cgroups land below this script's own). The script starts one copy; the latency is from its
  exec to its pid sitting in its job cgroup in every hierarchy (the daemon writes the limits
  before it moves the pid, so from then on they apply; they are read back afterwards and
  checked).
- kernel: bench/cgroup_floor.py, a plain script with no daemon, starts a fresh process (a
  copy of `sleep`) itself and at once makes the same job cgroups, writes the same limits and
  moves the pid, in the governor's order, with bare os calls: no wake-up, no look at /proc, no
  database. Same latency, same way of measuring; the floor any governor stands on.

Both are measured the same way: the exec time is the kernel's own timestamp of the exec event
(CLOCK_MONOTONIC, from this script's own process-events subscription; Popen's return when the
connector cannot be opened), and "in force" is the first look at /proc/<pid>/cgroup (about
every 0.1 ms) that shows the job cgroup in every hierarchy. The looking runs at real-time
priority (SCHED_FIFO 1, not inherited by the processes it starts) where the kernel allows it:
otherwise a busy CPU (stress-ng, or the daemon recording the attach right after its move)
delays the look, not the limits, and the figure would measure the observer. A trial waits
until the daemon has recorded the process's end and removed its cgroup, then `--gap` seconds
plus a random 0-20 ms, so trials do not overlap and do not lock onto the scheduler tick. A
move finishes on a tick (see below) and how many ticks it waits depends on where in a tick it
starts; with a fixed gap every trial started at about the same point of a tick (on an idle run
87 of 105 execs fell 2-4 ms after a tick, 4 of 105 in 0.5-2 ms), and the result depended on
where that point happened to land rather than on where real processes start: anywhere.
Prints p50/p99/max of each and the daemon's overhead above the
kernel (daemon minus kernel at p50 and at p99) against the target (2 ms / 5 ms), and the mean
overhead: on this v1 host a move waits for an RCU grace period, which ends on a scheduler tick
(4 ms at HZ=250), so both series come in steps of a tick and the difference of two
percentiles jumps by whole ticks from run to run; the difference of the means is the stable
estimate of what the daemon adds. `--load` runs
`stress-ng --cpu 2` for the whole measurement (started and stopped by this script).

cgroup v1 only (the hierarchies this development host has). Kills and reaps every process it
started, stops the daemon with SIGTERM, removes the cgroup folders it made, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ffrtmp.limits import CPU_PERIOD_US, Limits

CGROUP_MOUNT = Path("/sys/fs/cgroup")
CGROUP_CONTROLLERS = ("cpu", "cpuacct", "memory")  # the v1 hierarchies the daemon uses here
CPU_QUOTA_PERCENT = 50
MEMORY_LIMIT_MB = 256
TARGET_OVERHEAD_P50_MS = 2.0
TARGET_OVERHEAD_P99_MS = 5.0
MATCHING_SLEEP_SECONDS = "600"
DAEMON_START_TIMEOUT = 30.0
TRIAL_TIMEOUT_SECONDS = 10.0  # a process not governed by then counts as missed
POLL_SECONDS = 0.0005
# Each trial starts a random 0-20 ms later than --gap says: 20 ms is a whole number of scheduler
# ticks at HZ 100, 250, 300 and 1000, so every start lands at an even chance anywhere in a tick.
TICK_PHASE_SPREAD_SECONDS = 0.020
REALTIME_PRIORITY = 1
FLOOR_SCRIPT = Path(__file__).with_name("cgroup_floor.py")


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


def own_cgroup_dirs_by_controller(parent_name: str) -> dict[str, Path]:
    """Where a relative --cgroup-parent lands, per controller: below this process's cgroup."""
    dirs = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in CGROUP_CONTROLLERS:
                if controller in controllers.split(",") and (CGROUP_MOUNT / controller).is_dir():
                    dirs[controller] = CGROUP_MOUNT / controller / path.lstrip("/") / parent_name
    return dirs


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


def in_job_cgroup(groups: dict[str, str], parent_name: str) -> bool:
    """In a job cgroup right below `parent_name` in every hierarchy."""
    return bool(groups) and all(
        path.rsplit("/", 2)[-2:-1] == [parent_name] for path in groups.values()
    )


def wait_governed(pid: int, parent_name: str) -> tuple[int | None, dict[str, str]]:
    """(the monotonic ns of the first look that finds `pid` governed, its cgroups), or None."""
    deadline = time.monotonic() + TRIAL_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        groups = read_cgroups(pid)
        if in_job_cgroup(groups, parent_name):
            return time.monotonic_ns(), groups
        time.sleep(POLL_SECONDS)
    return None, {}


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


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def fmt_ms(ms: float) -> str:
    return f"{ms:.2f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


@dataclass
class Series:
    """One side's trials: latencies in ms, and what went wrong."""

    name: str
    latencies_ms: list[float] = field(default_factory=list)
    missed: int = 0
    wrong_limits: int = 0
    clock_fallbacks: int = 0

    def line(self, trials: int) -> str:
        got = len(self.latencies_ms)
        head = f"{self.name:>6}: {got}/{trials} governed"
        if not got:
            return head
        return (
            f"{head}; exec -> limits in force: p50 {fmt_ms(percentile(self.latencies_ms, 50))}, "
            f"p99 {fmt_ms(percentile(self.latencies_ms, 99))}, max {fmt_ms(max(self.latencies_ms))}"
        )


class FloorScript:
    """bench/cgroup_floor.py in a subprocess, with the job cgroups this script asks it for."""

    def __init__(self, parent_name: str, argv: list[str]) -> None:
        self.parent_name = parent_name
        # One parent per hierarchy, in the governor's order (cpu, cpuacct, memory); a
        # hierarchy mounted under two names (cpu,cpuacct) counts once.
        by_controller = own_cgroup_dirs_by_controller(parent_name)
        self.parents: list[Path] = []
        index: dict[str, int] = {}
        for controller in CGROUP_CONTROLLERS:
            directory = by_controller[controller]
            same = [i for i, p in enumerate(self.parents) if p.resolve() == directory.resolve()]
            if not same:
                self.parents.append(directory)
            index[controller] = same[0] if same else len(self.parents) - 1
        limits = Limits(cpu_quota=CPU_QUOTA_PERCENT, memory_limit_mb=MEMORY_LIMIT_MB)
        self.limit_writes = [
            [index["cpu"], "cpu.cfs_period_us", str(CPU_PERIOD_US)],
            [index["cpu"], "cpu.cfs_quota_us", str(limits.cpu_quota_us)],
            [index["cpu"], "cpu.shares", str(limits.cpu_shares_v1)],
            [index["memory"], "memory.limit_in_bytes", str(limits.memory_limit_bytes)],
        ]
        for parent in self.parents:
            parent.mkdir(exist_ok=True)
        plan = {
            "parents": [str(p) for p in self.parents],
            "limits": self.limit_writes,
            "argv": argv,
        }
        self.process = subprocess.Popen(
            [sys.executable, str(FLOOR_SCRIPT), json.dumps(plan)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def spawn(self, job: str) -> int:
        """The pid of the process the script started for `job`, which it is now governing;
        answer() then tells how that went."""
        self.process.stdin.write(f"{job}\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def answer(self) -> str:
        return self.process.stdout.readline().strip()

    def remove(self, job: str) -> None:
        """rmdir the job's cgroups once its (killed) process has left them."""
        deadline = time.monotonic() + TRIAL_TIMEOUT_SECONDS
        for parent in self.parents:
            while True:
                try:
                    (parent / job).rmdir()
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.001)  # busy until the killed process is gone
                else:
                    break

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for parent in self.parents:
            remove_cgroup_tree(parent)


class Trials:
    """The daemon and the floor script, one trial each in turn."""

    def __init__(self, workdir: Path, clock: ExecClock, scan_interval: str | None) -> None:
        self.workdir = workdir
        self.clock = clock
        self.ffmpeg = workdir / "bin" / "ffmpeg"
        self.probe = workdir / "probe" / "sleep"
        for copy in (self.ffmpeg, self.probe):
            copy.parent.mkdir()
            shutil.copy2(shutil.which("sleep") or "/bin/sleep", copy)
        self.daemon_parent = unique_parent("daemon")
        self.daemon = WatchDaemon(
            workdir,
            "daemon",
            [
                "--watch-config",
                str(write_watch_config(workdir, self.ffmpeg)),
                "--discovery",
                "events",
                "--cgroup-parent",
                self.daemon_parent,
                "--cpu-quota",
                str(CPU_QUOTA_PERCENT),
                "--memory-limit",
                str(MEMORY_LIMIT_MB),
                *(["--scan-interval", scan_interval] if scan_interval else []),
            ],
        )
        self.floor: FloorScript | None = None
        self.children = Children()
        self.daemon_series, self.kernel_series = Series("daemon"), Series("kernel")

    def start(self) -> None:
        self.daemon.start()
        self.floor = FloorScript(unique_parent("kernel"), [str(self.probe), MATCHING_SLEEP_SECONDS])

    def _measure(self, series: Series, start, end, parent: str) -> str | None:
        """One process, from the exec of what `start()` starts (its pid) to governed below
        `parent`; `end(pid)` kills it. Returns the job cgroup's name, None if missed."""
        start_ns = time.monotonic_ns()
        pid = start()
        return_ns = time.monotonic_ns()
        seen_ns, groups = wait_governed(pid, parent)
        try:
            if seen_ns is None:
                series.missed += 1
                return None
            self.clock.read()  # the exec event may still be queued
            exec_ns = self.clock.exec_ns.pop(pid, None)
            if exec_ns is None or exec_ns < start_ns:
                exec_ns = return_ns
                series.clock_fallbacks += 1
            series.latencies_ms.append((seen_ns - exec_ns) / 1e6)
            series.wrong_limits += not limits_read_back(groups)
            return groups["cpu"].rsplit("/", 1)[-1]
        finally:
            end(pid)

    def daemon_trial(self) -> None:
        started: list[subprocess.Popen] = []

        def start() -> int:
            started.append(self.children.start([str(self.ffmpeg), MATCHING_SLEEP_SECONDS]))
            return started[0].pid  # the kernel tells the daemon

        def end(_pid: int) -> None:
            started[0].kill()
            started[0].wait()
            self.children.reap_finished()

        job = self._measure(self.daemon_series, start, end, self.daemon_parent)
        if job is not None:
            # The daemon records the end and removes the cgroup: the next trial starts after.
            directories = [d / job for d in own_cgroup_dirs(self.daemon_parent)]
            deadline = time.monotonic() + TRIAL_TIMEOUT_SECONDS
            while any(d.exists() for d in directories) and time.monotonic() < deadline:
                time.sleep(0.005)

    def kernel_trial(self, number: int) -> None:
        floor = self.floor
        job = f"job-{number}"

        def end(pid: int) -> None:
            os.kill(pid, signal.SIGKILL)  # the script's own child: reaped by the kernel

        try:
            self._measure(self.kernel_series, lambda: floor.spawn(job), end, floor.parent_name)
        finally:
            answer = floor.answer()
            floor.remove(job)
        if answer != "ok":
            print(f"kernel trial {number}: {answer}", file=sys.stderr)

    def close(self) -> int | None:
        self.children.close()
        returncode = self.daemon.stop()
        if self.floor is not None:
            self.floor.close()
        for directory in own_cgroup_dirs(self.daemon_parent):
            remove_cgroup_tree(directory)
        return returncode


class CpuLoad:
    """`stress-ng --cpu 2` for the whole measurement; stopped by its pid."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        stress = shutil.which("stress-ng")
        if stress is None:
            raise RuntimeError("--load needs stress-ng on PATH")
        self.process = subprocess.Popen(
            [stress, "--cpu", "2", "--timeout", "3600", "--quiet"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its workers are its children: stopped as one group
        )
        time.sleep(1.0)  # its workers spin up

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def observe_at_realtime_priority() -> str:
    """SCHED_FIFO for this script's looks at /proc; its children start at normal priority."""
    try:
        os.sched_setscheduler(
            0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(REALTIME_PRIORITY)
        )
    except (OSError, AttributeError) as exc:
        return f"observer at normal priority ({exc}): busy CPUs delay the looks too"
    return f"observer at SCHED_FIFO {REALTIME_PRIORITY}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200, help="trials of each (default 200)")
    parser.add_argument("--warmup", type=int, default=5, help="uncounted trials of each first")
    parser.add_argument(
        "--gap", type=float, default=0.1, help="seconds between trials (default 0.1)"
    )
    parser.add_argument("--load", action="store_true", help="keep both cores busy (stress-ng)")
    parser.add_argument("--scan-interval", help="passed to the daemon (default: its own, 10s)")
    parser.add_argument("--raw", metavar="FILE", help="also write every latency (ms) as JSON")
    args = parser.parse_args()
    if args.trials < 1 or args.warmup < 0 or args.gap < 0:
        parser.error("--trials must be positive, --warmup and --gap at least 0")
    problem = cgroups_usable()
    if problem:
        print(problem, file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still runs the cleanups
    workdir = Path(tempfile.mkdtemp(prefix="ffrtmp-latency-"))
    clock = ExecClock()
    load = CpuLoad()
    trials = Trials(workdir, clock, args.scan_interval)
    try:
        trials.start()
        if args.load:
            load.start()
        observer = observe_at_realtime_priority()
        spread = random.Random()
        for number in range(args.warmup + args.trials):
            if number == args.warmup:
                trials.daemon_series, trials.kernel_series = Series("daemon"), Series("kernel")
            kernel_first = number % 2 == 1
            for side in ("kernel", "daemon") if kernel_first else ("daemon", "kernel"):
                if side == "daemon":
                    trials.daemon_trial()
                else:
                    trials.kernel_trial(number)
                time.sleep(args.gap + spread.uniform(0, TICK_PHASE_SPREAD_SECONDS))
    finally:
        load.stop()
        returncode = trials.close()
        clock.close()
        shutil.rmtree(workdir, ignore_errors=True)
    if returncode not in (0, None):
        print(f"the daemon stopped with {returncode}:\n{trials.daemon.log_tail()}")
    load_text = "both cores busy (stress-ng --cpu 2)" if args.load else "no added load"
    print(f"exec time from: {clock.source}; {observer}; {load_text}")
    ok = True
    for series in (trials.daemon_series, trials.kernel_series):
        print(series.line(args.trials))
        if series.clock_fallbacks:
            print(f"        ({series.clock_fallbacks} timed from Popen's return: no exec event)")
        if series.wrong_limits:
            print(f"        {series.wrong_limits} cgroups did not read back the limits")
        ok = ok and not series.missed and not series.wrong_limits
    daemon, kernel = trials.daemon_series.latencies_ms, trials.kernel_series.latencies_ms
    if args.raw:
        Path(args.raw).write_text(json.dumps({"daemon": daemon, "kernel": kernel}) + "\n")
    if daemon and kernel:
        over50 = percentile(daemon, 50) - percentile(kernel, 50)
        over99 = percentile(daemon, 99) - percentile(kernel, 99)
        met = over50 <= TARGET_OVERHEAD_P50_MS and over99 <= TARGET_OVERHEAD_P99_MS
        print(
            f"daemon overhead above the kernel: p50 {over50:+.2f} ms, p99 {over99:+.2f} ms; "
            f"target p50 <= {TARGET_OVERHEAD_P50_MS:g} ms, p99 <= {TARGET_OVERHEAD_P99_MS:g} ms: "
            f"{'met' if met else 'MISSED'}"
        )
        ok = ok and met
        mean = sum(daemon) / len(daemon) - sum(kernel) / len(kernel)
        print(
            f"mean overhead {mean:+.2f} ms (the moves finish on scheduler ticks, so both "
            "spread in steps of a tick and a percentile's difference jumps by whole ticks; "
            "the mean's does not)"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
