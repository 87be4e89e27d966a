"""Does governing cost a transcode its CPU share? The same ffmpeg transcode, governed with no
quota and ungoverned, side by side under the same extra load.

    .venv/bin/python bench/fairness.py [--rounds 3] [--window 20] [--parent-cpu-weight N]

Each round starts two copies of /usr/bin/ffmpeg, made by this script under names of their own
(`fair-governed`, `fair-ungoverned`), each transcoding the same endless 720p test picture
(lavfi testsrc) to 480p H.264 (libx264, or mpeg4 where ffmpeg has no libx264) into nowhere,
as fast as it can. `ffrtmp watch` runs as a subprocess with the built-in defaults (no CPU
quota, weight 100, the default parent weight) and one rule that matches only the
`fair-governed` copy (its exact executable), its job cgroups below a parent of a unique name
beside this script's own cgroup. `stress-ng --cpu <cores>` keeps every core busy for the
whole measurement, in this script's own cgroup, as the ungoverned copy is.

Once the governed copy sits in its job cgroup and both are running, the frames each encodes
during the same `--window` seconds are counted (from ffmpeg's -progress output); a round's
figure is governed frames / ungoverned frames. It prints each round, the ratio over all
rounds (frames summed) and MET/MISSED against the target: >= 0.9, i.e. governing does not
cost a transcode more than a tenth of its speed under contention. `--parent-cpu-weight N`
passes that weight to the daemon instead of the default (100 shows the old behaviour, a
parent at the kernel's default weight).

Needs root, ffmpeg and stress-ng (apt-get install ffmpeg stress-ng). Kills and reaps every
process it started by pid, stops the daemon with SIGTERM, removes the cgroups it made.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ffrtmp.cgroups.v1 import has_v1_hierarchies, v1_mounts

CGROUP_ROOT = Path("/sys/fs/cgroup")
TARGET = 0.9
DAEMON_START_TIMEOUT_S = 120
ATTACH_TIMEOUT_S = 60
GOVERNED_NAME = "fair-governed"
UNGOVERNED_NAME = "fair-ungoverned"
_FRAME = re.compile(rb"^frame=(\d+)$", re.MULTILINE)


def video_encoder() -> str:
    encoders = subprocess.run(
        ["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    return "libx264" if " libx264 " in encoders else "mpeg4"


def transcode_argv(binary: Path, progress: Path, encoder: str) -> list[str]:
    return [
        str(binary),
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=1280x720:rate=30",
        "-vf",
        "scale=854:480",
        "-c:v",
        encoder,
        *(["-preset", "veryfast"] if encoder == "libx264" else []),
        "-f",
        "null",
        "-",
        "-progress",
        str(progress),
        "-stats_period",
        "0.25",
    ]


def frames_so_far(progress: Path) -> int:
    """The last frame count ffmpeg wrote to its -progress file (0 before the first)."""
    try:
        found = _FRAME.findall(progress.read_bytes())
    except FileNotFoundError:
        return 0
    return int(found[-1]) if found else 0


def scans_recorded(db_path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM scans").fetchone()[0]
    except sqlite3.Error:
        return 0


def own_cgroups(pid: int | str) -> dict[str, str]:
    found = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(","):
                found[controller] = path
    return found


def wait_for(what: str, condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(0.05)


class Processes:
    """Every process this script starts, each killed by its pid and reaped in close()."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, argv: list[str], **popen) -> subprocess.Popen:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **popen)
        self.started.append(process)
        return process

    def end(self, process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        if process.poll() is None:
            os.kill(process.pid, sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def close(self) -> None:
        for process in reversed(self.started):
            self.end(process)


class BenchCgroup:
    """A cpu cgroup of a unique name below this script's own, which the script moves itself
    into so that everything it starts (the daemon, the ungoverned copy, stress-ng) competes,
    thread by thread, with the daemon's parent cgroup right below: the layout of a daemon
    whose own cgroup holds other work. Not the root cgroup itself, where the kernel's
    autogroups (sched_autogroup_enabled) would group this script's session into one entity.
    Moves itself back and removes the cgroup on exit."""

    def __enter__(self) -> BenchCgroup:
        mount = v1_mounts(CGROUP_ROOT, Path("/proc"))["cpu"]
        self.original = own_cgroups("self")["cpu"]
        relative = Path(self.original).relative_to(mount.mount_root)
        self.origin_dir = mount.mount_point / relative
        self.path = self.origin_dir / f"ffrtmp-fairness-{uuid.uuid4().hex[:8]}"
        self.path.mkdir()
        (self.path / "cgroup.procs").write_text(str(os.getpid()))
        return self

    def __exit__(self, *exc_info) -> None:
        (self.origin_dir / "cgroup.procs").write_text(str(os.getpid()))
        try:
            self.path.rmdir()
        except OSError as err:
            print(f"could not remove {self.path}: {err}", file=sys.stderr)


def remove_parent(parent_dirs: list[Path]) -> None:
    """rmdir the parent (a unique name this script chose) and whatever job cgroup the daemon
    left below it, deepest first."""
    for parent in parent_dirs:
        if not parent.is_dir():
            continue
        for child in parent.iterdir():
            if child.is_dir():
                try:
                    child.rmdir()
                except OSError as err:
                    print(f"could not remove {child}: {err}", file=sys.stderr)
        try:
            parent.rmdir()
        except OSError as err:
            print(f"could not remove {parent}: {err}", file=sys.stderr)


def measure(args: argparse.Namespace, workdir: Path, processes: Processes) -> list[tuple]:
    from ffrtmp.cgroups import create_governor

    parent_name = f"ffrtmp-fairness-{uuid.uuid4().hex[:8]}"
    encoder = video_encoder()
    ffmpeg = Path(shutil.which("ffmpeg") or "/usr/bin/ffmpeg")
    governed, ungoverned = workdir / GOVERNED_NAME, workdir / UNGOVERNED_NAME
    for copy in (governed, ungoverned):
        shutil.copy2(ffmpeg, copy)
    config = workdir / "watch.yaml"
    config.write_text(
        f"target_commands: [{GOVERNED_NAME}]\n"
        f"commands:\n  {GOVERNED_NAME}:\n    match: {{exe: '{governed}'}}\n"
    )
    db_path = workdir / "fairness.db"
    flags = []
    if args.parent_cpu_weight is not None:
        flags = ["--cgroup-parent-cpu-weight", str(args.parent_cpu_weight)]
    daemon_log = open(workdir / "daemon.log", "w")  # noqa: SIM115 (closed with the workdir)
    daemon = processes.start(
        [sys.executable, "-m", "ffrtmp.cli", "watch", "--db", str(db_path)]
        + ["--watch-config", str(config), "--cgroup-parent", parent_name]
        + ["--discovery", "events", *flags],
        stdout=daemon_log,
        stderr=subprocess.STDOUT,
    )
    parents = list(create_governor(parent=parent_name).parents)
    rounds = []
    try:
        wait_for("the daemon's first scan", lambda: scans_recorded(db_path), DAEMON_START_TIMEOUT_S)
        names = ("cpu.weight", "cpu.shares")
        weight_file = next(p / n for p in parents for n in names if (p / n).exists())
        held = weight_file.read_text().strip()
        print(f"parent cgroup {weight_file.parent}: {weight_file.name} {held}")
        cores = os.cpu_count()
        print(f"encoder {encoder}, {cores} cores busy with stress-ng, window {args.window:g} s")
        load = processes.start(
            ["stress-ng", "--cpu", str(os.cpu_count()), "--quiet"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for number in range(1, args.rounds + 1):
            rounds.append(one_round(number, args, workdir, processes, encoder, parent_name))
        processes.end(load)
    finally:
        processes.end(daemon, signal.SIGTERM)
        daemon_log.close()
        remove_parent(parents)
    return rounds


def one_round(number, args, workdir, processes, encoder, parent_name) -> tuple[int, int]:
    progress = {name: workdir / f"progress-{number}-{name}" for name in ("gov", "ungov")}
    gov = processes.start(transcode_argv(workdir / GOVERNED_NAME, progress["gov"], encoder))
    ungov = processes.start(transcode_argv(workdir / UNGOVERNED_NAME, progress["ungov"], encoder))
    try:

        def governed_in_its_job_cgroup() -> bool:
            return any(f"/{parent_name}/" in path for path in own_cgroups(gov.pid).values())

        wait_for(
            "the governed copy in its job cgroup", governed_in_its_job_cgroup, ATTACH_TIMEOUT_S
        )
        wait_for(
            "both copies encoding",
            lambda: frames_so_far(progress["gov"]) > 0 and frames_so_far(progress["ungov"]) > 0,
            ATTACH_TIMEOUT_S,
        )
        start = frames_so_far(progress["gov"]), frames_so_far(progress["ungov"])
        time.sleep(args.window)  # the measurement itself: a fixed window of both running
        end = frames_so_far(progress["gov"]), frames_so_far(progress["ungov"])
    finally:
        processes.end(gov)
        processes.end(ungov)
    governed_frames, ungoverned_frames = end[0] - start[0], end[1] - start[1]
    ratio = governed_frames / ungoverned_frames if ungoverned_frames else float("inf")
    print(
        f"round {number}: governed {governed_frames} frames, ungoverned {ungoverned_frames} "
        f"frames: ratio {ratio:.2f}",
        flush=True,
    )
    return governed_frames, ungoverned_frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--window", type=float, default=20.0, help="seconds counted per round (default 20)"
    )
    parser.add_argument(
        "--parent-cpu-weight",
        type=int,
        help="passed to the daemon as --cgroup-parent-cpu-weight (default: the daemon's own)",
    )
    args = parser.parse_args()
    missing = [tool for tool in ("ffmpeg", "stress-ng") if shutil.which(tool) is None]
    if missing:
        print(f"needs {' and '.join(missing)}: apt-get install {' '.join(missing)}")
        return 2
    if not has_v1_hierarchies(CGROUP_ROOT, Path("/proc")):
        print(f"cgroup v1 only: no v1 cpu and memory hierarchies below {CGROUP_ROOT}")
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still runs the cleanups
    processes = Processes()
    with tempfile.TemporaryDirectory(prefix="ffrtmp-fairness-") as workdir, BenchCgroup() as bench:
        print(f"this script, the daemon, the ungoverned copy and stress-ng run in {bench.path}")
        try:
            rounds = measure(args, Path(workdir), processes)
        finally:
            processes.close()
    governed = sum(g for g, _ in rounds)
    ungoverned = sum(u for _, u in rounds)
    ratio = governed / ungoverned if ungoverned else float("inf")
    verdict = "MET" if ratio >= TARGET else "MISSED"
    print(
        f"governed / ungoverned speed over {len(rounds)} rounds: {ratio:.2f} "
        f"(target >= {TARGET}): {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
