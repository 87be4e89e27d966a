"""`ffrtmp top` against a real daemon and real governed processes: once, as JSON, and live
in a real terminal (a tmux pane), quit with q and with Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path

import parts
import pytest
from cgroup_hierarchy import JobCgroups
from daemon_harness import query, start_watch
from ffrtmp_commands import FFRTMP
from helpers_processes import TEST_TARGET, wait_until

from ffrtmp.top import JobNow, screen_lines, short_bytes, short_duration, sorted_jobs

PYTHON = str(Path("/usr/bin/python3").resolve())
# Busy, and touching fresh memory, which is charged to the job cgroup it is in by then.
BUSY = (
    "import mmap\n"
    "while True:\n"
    "    m = mmap.mmap(-1, 8 << 20)\n"
    "    m.write(bytes(8 << 20))\n"
    "    m.close()\n"
)
SLEEPY = "import time\ntime.sleep(3600)\n"
MIB = 1024 * 1024


@pytest.fixture
def running_jobs(tmp_path, db_path, spawn, job_cgroups: JobCgroups):
    """A real `ffrtmp watch` governing a busy and a sleeping process of the suite's target,
    both at a 30 % CPU quota and a 256 MiB memory limit; (busy pid, sleepy pid) once both are
    attached."""
    token = f"top-{uuid.uuid4().hex}"
    config = tmp_path / "watch.yaml"
    config.write_text(
        f"target_commands: [{TEST_TARGET}]\n"
        "scan_interval: 300ms\n"
        "default_limits: {cpu_quota: 30, memory_limit: 256}\n"
        f"commands:\n  {TEST_TARGET}:\n    match: {{exe: '{PYTHON}', cmdline_regex: '{token}'}}\n"
    )
    start_watch(spawn, db_path, config, job_cgroups.parent)
    busy = spawn([TEST_TARGET, "-c", BUSY, token], executable=PYTHON)
    sleepy = spawn([TEST_TARGET, "-c", SLEEPY, token], executable=PYTHON)
    for process in (busy, sleepy):
        wait_until(
            lambda p=process: (
                query(db_path, "SELECT state FROM processes WHERE pid = ?", (p.pid,))
                == [("attached",)]
            ),
            what=f"pid {process.pid} attached",
        )
    return busy.pid, sleepy.pid


def top_json(db_path: Path, *flags: str) -> list[dict]:
    result = subprocess.run(
        [*FFRTMP, "top", "--json", "--db", str(db_path), *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_json_shows_running_jobs_with_live_figures_and_writes_nothing(db_path, running_jobs):
    busy, sleepy = running_jobs
    before = db_path.stat().st_mtime_ns, query(db_path, "SELECT count(*) FROM process_events")

    # Sorted by CPU: the busy loop is throttled at its 30 % quota, the sleeper uses ~0.
    def busy_first() -> bool:
        jobs = top_json(db_path, "--sort", "cpu", "--interval", "1s")
        return [j["pid"] for j in jobs] == [busy, sleepy] and jobs[0]["cpu_percent"] > 5

    wait_until(busy_first, what="the busy job first, with CPU %")
    jobs = {j["pid"]: j for j in top_json(db_path, "--interval", "1s")}
    assert 5 < jobs[busy]["cpu_percent"] <= 30 * 1.5  # the quota holds, measured over 1 s
    assert jobs[busy]["cpu_quota_percent"] == 30
    assert jobs[busy]["cpu_throttled_seconds"] > 0
    assert jobs[sleepy]["cpu_percent"] < 2
    for job in jobs.values():
        assert job["state"] == "attached" and job["command"] == TEST_TARGET
        assert job["memory_limit_bytes"] == 256 * MIB
        assert 0 <= job["memory_bytes"] <= 256 * MIB
        assert job["age_seconds"] >= 0 and job["job_id"].startswith(f"auto-{TEST_TARGET}-")
    by_pid = top_json(db_path, "--sort", "pid")
    assert [j["pid"] for j in by_pid] == sorted([busy, sleepy])
    assert query(db_path, "SELECT count(*) FROM process_events") == before[1]


def test_once_prints_a_screen_that_fits_80_columns(db_path, running_jobs):
    busy, sleepy = running_jobs
    result = subprocess.run(
        [*FFRTMP, "top", "--once", "--db", str(db_path), "--interval", "500ms"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ffrtmp top") and "2 running, 2 governed" in lines[0]
    assert lines[1].split()[:3] == ["PID", "COMMAND", "STATE"]
    assert all(len(line) <= 80 for line in lines)
    assert {int(line.split()[0]) for line in lines[2:]} == {busy, sleepy}


def test_no_database_is_one_sentence_and_exit_1(tmp_path):
    missing = tmp_path / "none.db"
    result = subprocess.run(
        [*FFRTMP, "top", "--once", "--db", str(missing)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: database {missing} does not exist yet")
    assert not missing.exists()


def test_an_interval_below_100ms_is_refused(db_path):
    result = subprocess.run(
        [*FFRTMP, "top", "--db", str(db_path), "--interval", "10ms"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "Invalid value for '--interval': must be at least 100ms, not 0.01s" in result.stderr


# --- a real terminal -------------------------------------------------------------------------


class Tmux:
    """A tmux server of the test's own (its own socket), with one 80x24 pane in which bash
    runs `argv` and then prints its exit status and waits, so the terminal can be looked at
    after the command ended. bash (not sh) goes on after a child that handled Ctrl-C."""

    def __init__(self, directory: Path, argv: list[str], env: dict[str, str]) -> None:
        self.socket = f"ffrtmp-top-{uuid.uuid4().hex[:10]}"
        conf = directory / "tmux.conf"
        conf.write_text("set -g status off\n")
        command = " ".join(shlex.quote(a) for a in argv)
        script = f'{command}; echo "exited with $?"; exec sleep 3600'
        self.run("-f", str(conf), "new-session", "-d", "-s", "t", "-x", "80", "-y", "24",
                 "bash", "-c", script, env=env)  # fmt: skip

    def run(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "t")

    def pane(self, variable: str) -> str:
        return self.run("display-message", "-p", "-t", "t", f"#{{{variable}}}").strip()

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def tmux(tmp_path):
    if shutil.which("tmux") is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is not installed (.ci/run installs it)")
        parts.skip(parts.TOP_TERMINAL, "tmux is not installed")
    sessions: list[Tmux] = []

    def start(argv: list[str]) -> Tmux:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX")}
        session = Tmux(tmp_path, argv, {**env, "TERM": "xterm-256color", "LANG": "C.UTF-8"})
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        session.close()


def job_line(screen: str, pid: int) -> list[str] | None:
    for line in screen.splitlines():
        cells = line.split()
        if cells and cells[0] == str(pid):
            return cells
    return None


def cpu_used(cells: list[str]) -> float | None:
    """The used part of a CPU%/QUOTA cell such as 29.7/30; None while it shows '-'."""
    used = cells[3].split("/")[0]
    return None if used == "-" else float(used)


@pytest.mark.parametrize("quit_key", ["q", "C-c"])
def test_live_view_in_a_terminal_shows_the_jobs_and_quits_cleanly(
    tmp_path, db_path, running_jobs, tmux, quit_key
):
    busy, sleepy = running_jobs
    pane = tmux([*FFRTMP, "top", "--db", str(db_path), "--interval", "500ms"])

    def figures_shown() -> bool:
        screen = pane.screen()
        busy_cells, sleepy_cells = job_line(screen, busy), job_line(screen, sleepy)
        return bool(
            busy_cells and sleepy_cells and (cpu_used(busy_cells) or 0) > 5 and
            cpu_used(sleepy_cells) is not None
        )  # fmt: skip

    wait_until(figures_shown, what="both jobs with CPU figures on the screen")
    assert pane.pane("alternate_on") == "1"
    screen = pane.screen()
    (tmp_path / f"top-screen-{quit_key}.txt").write_text(screen)
    lines = screen.splitlines()
    assert lines[0].startswith("ffrtmp top") and "2 running, 2 governed" in lines[0]
    assert lines[1].split() == [
        "PID", "COMMAND", "STATE", "CPU%/QUOTA", "MEM/LIMIT", "THROTTLED", "AGE", "JOB"
    ]  # fmt: skip
    busy_cells, sleepy_cells = job_line(screen, busy), job_line(screen, sleepy)
    assert job_line(lines[2], busy), "sorted by CPU: the busy job first"
    command, state = busy_cells[1:3]
    # Cut to fit its column, as every long name is.
    assert len(command) >= 8 and command.endswith("…") and TEST_TARGET.startswith(command[:-1])
    assert state == "attached"
    assert re.fullmatch(r"\d+\.\d/30", busy_cells[3]) and 5 < cpu_used(busy_cells) <= 45
    assert re.fullmatch(r"[\d.]+[KM]?/256M", busy_cells[4])
    assert re.fullmatch(r"[\d.]+(ms|s)|\d+m\d\ds", busy_cells[5]), busy_cells[5]
    assert cpu_used(sleepy_cells) < 2
    assert all(len(line) <= 80 for line in lines)

    pane.run("send-keys", "-t", "t", quit_key)
    wait_until(lambda: "exited with" in pane.screen(), what="top to exit")
    after = pane.screen()
    assert after.strip() == "exited with 0"  # its status, and nothing of its screen is left
    assert pane.pane("alternate_on") == "0"  # the alternate screen was left
    assert pane.pane("cursor_flag") == "1"  # the cursor is visible again


# --- the screen, without a terminal ----------------------------------------------------------


def a_job(**changes) -> JobNow:
    from datetime import UTC, datetime

    values = dict(
        process_id=1,
        job_id="auto-ffmpeg-4242-123456",
        pid=4242,
        command="ffmpeg",
        rule="ffmpeg",
        state="attached",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        age_seconds=3725.0,
        cpu_percent=29.94,
        cpu_quota_percent=30.0,
        cpu_seconds=12.5,
        memory_bytes=120 * MIB,
        memory_limit_bytes=2048 * MIB,
        peak_memory_bytes=130 * MIB,
        cpu_throttled_seconds=95.0,
        cpu_throttled_periods=900,
        cpu_periods=1000,
    )
    values.update(changes)
    return JobNow(**values)


def test_a_screen_line_holds_every_figure_and_fits_the_width():
    lines = screen_lines([a_job()], 100, "title")
    assert lines[2].split() == [
        "4242", "ffmpeg", "attached", "29.9/30", "120M/2.0G", "1m35s", "1h02m",
        "auto-ffmpeg-4242-123456",
    ]  # fmt: skip
    narrow = screen_lines([a_job()], 80, "title")
    assert len(narrow[2]) == 80 and narrow[2].endswith(" auto-ffmpeg-…")
    assert narrow[2].split()[:7] == lines[2].split()[:7]


def test_bytes_from_a_process_never_reach_the_terminal_as_control_characters():
    line = screen_lines([a_job(command="ff\x1b[2Jmpeg", job_id="run-\x07bell")], 120, "t")[2]
    assert "\x1b" not in line and "\x07" not in line
    assert "ff?[2Jmpeg" in line and "run-?bell" in line


def test_sorting_puts_jobs_without_the_figure_last():
    jobs = [a_job(pid=1, cpu_percent=None), a_job(pid=2, cpu_percent=5), a_job(pid=3)]
    assert [j.pid for j in sorted_jobs(jobs, "cpu")] == [3, 2, 1]
    assert [j.pid for j in sorted_jobs(jobs, "pid")] == [1, 2, 3]


@pytest.mark.parametrize(
    ("value", "text"), [(512, "512"), (3584, "3.5K"), (120 * MIB, "120M"), (1536 * MIB, "1.5G")]
)
def test_short_bytes(value, text):
    assert short_bytes(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.25, "0.25s"), (45, "45s"), (750, "12m30s"), (11040, "3h04m"), (183600, "2d03h")],
)
def test_short_duration(seconds, text):
    assert short_duration(seconds) == text
