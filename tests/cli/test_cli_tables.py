"""Tables for people: they fit the terminal, carry units, choose columns, filter by how a
process ended; and no byte a process chose reaches the operator's terminal as a control."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import sys
import termios
from datetime import UTC, datetime, timedelta

import pytest
from daemon_harness import pump, query, write_config
from ffrtmp_commands import invoke
from helpers_processes import STATE_TIMEOUT_S, TEST_TARGET

from ffrtmp.cli import human
from ffrtmp.cli.table import cell_width, cut, fitted_widths
from ffrtmp.printable import printable

# --- units and fitting --------------------------------------------------------------------------


def test_units_for_people():
    assert human.size(23539712) == "22.4 MiB"
    assert human.size(512) == "512 B"
    assert human.size(3 * 1024**3) == "3.0 GiB"
    assert human.duration(0.061495363) == "61ms"
    assert human.duration(4.25) == "4.2s"
    assert human.duration(90) == "1m30s"
    assert human.duration(9000) == "2h30m"
    assert human.duration(90061) == "1d1h"
    assert human.signal_name(9) == "SIGKILL"
    assert human.signal_name(signal.SIGRTMIN + 3) == "SIGRTMIN+3"
    assert human.signal_number("kill") == human.signal_number("SIGKILL") == 9
    assert human.outcome({"exit_signal": 9, "oom_killed": True}) == "OOM-killed"
    assert human.outcome({"exit_signal": 9, "oom_killed": False}) == "SIGKILL"
    assert human.outcome({"exit_code": 0}) == "exit 0"
    assert human.outcome({"exited_at": datetime.now(UTC)}) == "unknown"
    assert human.outcome({}) is None


def test_the_widest_cuttable_columns_give_way_first():
    # id 3, job 30 (cuttable), state 8, message 60 (cuttable); 80 columns with 3 gaps of 2.
    widths = fitted_widths([3, 30, 8, 60], [3, 6, 5, 7], [False, True, False, True], 80)
    assert widths == [3, 30, 8, 33]  # the message gave way; the job still fits whole
    widths = fitted_widths([3, 30, 8, 60], [3, 6, 5, 7], [False, True, False, True], 50)
    assert widths == [3, 17, 8, 16]  # both cut, to within one of each other
    assert fitted_widths([3, 30], [3, 6], [False, True], None) == [3, 30]  # no limit: whole
    assert fitted_widths([3, 30], [3, 6], [False, True], 5) == [3, 6]  # never below minimum
    assert cut("auto-ffmpeg-123456-987654", 10) == "auto-ffmp…"
    assert cell_width(cut("転送ジョブ転送ジョブ", 7)) <= 7  # wide characters count two


def test_printable_escapes_controls_and_keeps_the_rest():
    assert printable("a\x1b]0;x\x07b") == "a\\x1b]0;x\\x07b"
    assert printable("\u202eevil\x9b2J\n\t") == "\\u202eevil\\x9b2J\\x0a\\x09"
    assert printable("café 転送 -vf scale=1280:-2") == "café 転送 -vf scale=1280:-2"


# --- filters and columns (rows as the store writes them) ----------------------------------------


@pytest.fixture
def ended(store):
    from test_cli_queries import register

    now = datetime.now(UTC)
    ids = {name: register(store, 52000 + i, age_s=60 - i) for i, name in enumerate("abcd")}
    store.record_exit(
        ids["a"], now=now, exit_code=None, exit_signal=9, reason=None, oom_killed=True
    )
    store.record_exit(ids["b"], now=now, exit_code=None, exit_signal=9, reason=None)
    store.record_exit(ids["c"], now=now, exit_code=3, exit_signal=None, reason=None)
    return ids


def test_oom_exit_code_and_signal_filters(store, db_path, ended):
    def ids(*args):
        result = invoke(db_path, "processes", "list", "--json", *args)
        assert result.exit_code == 0, result.output
        return [row["id"] for row in json.loads(result.stdout)]

    assert ids("--oom") == [ended["a"]]
    assert ids("--signal", "KILL") == [ended["b"], ended["a"]]
    assert ids("--signal", "9", "--oom") == [ended["a"]]
    assert ids("--exit-code", "3") == [ended["c"]]
    assert ids("--since", "today") == ids()
    table = invoke(db_path, "processes", "list", "-o", "id,result", "--signal", "SIGKILL").stdout
    assert table.splitlines() == [
        "ID  RESULT",
        f" {ended['b']}  SIGKILL",
        f" {ended['a']}  OOM-killed",
    ]
    bad = invoke(db_path, "processes", "list", "--signal", "KIL")
    assert bad.exit_code == 2
    assert "'KIL' is not a signal name or number" in bad.output


def test_columns_choose_for_every_format_and_json_carries_every_column(store, db_path, ended):
    every = json.loads(invoke(db_path, "processes", "list", "--json").stdout)[0]
    assert {"oom_killed", "peak_memory_bytes", "cpu_seconds", "argv", "cwd"} <= set(every)
    chosen = json.loads(invoke(db_path, "processes", "list", "--json", "-o", "id,result").stdout)
    assert chosen[-1] == {"id": ended["a"], "result": "OOM-killed"}
    csv_text = invoke(db_path, "processes", "list", "--csv", "-o", "pid", "-o", "oom_killed").stdout
    assert csv_text.splitlines()[:2] == ["pid,oom_killed", "52003,"]
    wrong = invoke(db_path, "errors", "list", "-o", "id,nope")
    assert wrong.exit_code == 2
    assert "no column named 'nope'; the columns are: id, occurred_at" in wrong.output


def test_show_takes_a_job_id(store, db_path, ended):
    result = invoke(db_path, "processes", "show", "auto-ffmpeg-52002", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["process"]["id"] == ended["c"]
    missing = invoke(db_path, "processes", "show", "auto-ffmpeg-1-2")
    assert (missing.exit_code, missing.output) == (
        1,
        "Error: no process with job id 'auto-ffmpeg-1-2'\n",
    )


def test_since_today_and_yesterday_are_local_midnights():
    from ffrtmp.cli.params import parse_since

    now = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
    today = parse_since("today", now)
    assert today.astimezone().time().isoformat() == "00:00:00"
    assert today <= now < today + timedelta(days=1, hours=1)
    assert parse_since("yesterday", now).astimezone().date() == today.astimezone().date() - (
        timedelta(days=1)
    )


NO_COLUMNS = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # a pipe: no width set

# --- a real terminal ----------------------------------------------------------------------------


def run_on_a_terminal(args: list[str], columns: int, **env: str) -> bytes:
    """The bytes `ffrtmp args` writes to a pseudo-terminal `columns` wide."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR")}
    environment.update(env, TERM="xterm")
    child = subprocess.Popen(
        [sys.executable, "-m", "ffrtmp.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
        env=environment,
    )
    os.close(secondary)
    out = b""
    try:
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        child.wait(timeout=STATE_TIMEOUT_S)
        os.close(primary)
    assert child.returncode == 0, out
    return out


def test_a_listing_fits_an_80_column_terminal_and_a_pipe_gets_it_whole(store, db_path, ended):
    long_message = "attach of pid 52000 start 1 to /sys/fs/cgroup/cpu/ffrtmp/auto-ffmpeg: " * 3
    from ffrtmp.errors import classify

    store.record_error("attach", classify(OSError(5, long_message)), now=datetime.now(UTC))
    for args in (["processes", "list"], ["errors", "list"], ["processes", "list", "-o", "all"]):
        out = run_on_a_terminal([*args, "--db", str(db_path)], 80)
        lines = out.decode().replace("\r\n", "\n").splitlines()
        plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in lines]
        if args[-1] != "all":  # every column of a process cannot fit; the defaults do
            assert max(cell_width(line) for line in plain) <= 80, "\n".join(plain)
        assert len(plain) > 1
    errors = run_on_a_terminal(["errors", "list", "--db", str(db_path)], 80).decode()
    assert "…" in errors and long_message not in errors
    piped = subprocess.run(
        [sys.executable, "-m", "ffrtmp.cli", "errors", "list", "--db", str(db_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=NO_COLUMNS,
    )
    assert long_message.strip() in piped.stdout and "…" not in piped.stdout


def test_colour_only_on_a_terminal_and_never_with_no_color(store, db_path, ended):
    coloured = run_on_a_terminal(["processes", "list", "--db", str(db_path)], 120)
    assert b"\x1b[31mOOM-killed" in coloured  # red
    assert b"\x1b[" not in run_on_a_terminal(
        ["processes", "list", "--db", str(db_path)], 120, NO_COLOR="1"
    )
    piped = subprocess.run(
        [sys.executable, "-m", "ffrtmp.cli", "processes", "list", "--db", str(db_path)],
        capture_output=True,
        timeout=60,
    )
    assert b"OOM-killed" in piped.stdout and b"\x1b" not in piped.stdout


# --- hostile bytes from a real process ----------------------------------------------------------

# Retitles the window, clears the screen through an 8-bit CSI, reverses what follows, and a
# carriage return and backspaces that would overwrite the line.
TITLE = "\x1b]0;owned\x07"
HOSTILE_DIR = f"job{TITLE}\r\x08\x08x"
HOSTILE_ARG = "\x9b2J\u202eevil\x1b[31m"
# Bytes that must never reach a terminal: C0 controls but the newline, DEL, and UTF-8 C1.
CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]")


@pytest.fixture
def shell_ffmpeg(tmp_path):
    """A copy of the shell named as the suite's target: waits on stdin, then ends as its
    script says."""
    target = tmp_path / "shbin" / TEST_TARGET
    target.parent.mkdir()
    shutil.copy(shutil.which("dash") or "/bin/sh", target)
    return target


@pytest.mark.slow
def test_control_bytes_a_process_chose_never_reach_the_terminal(
    tmp_path, db_path, spawn, shell_ffmpeg, job_cgroups, daemons
):
    hostile_cwd = tmp_path / HOSTILE_DIR
    hostile_cwd.mkdir()
    config = write_config(tmp_path, shell_ffmpeg)
    daemon = daemons(db_path, config, job_cgroups.parent)  # exit codes from netlink
    daemon.start(daemon.clock.now())
    hostile = spawn(
        [shell_ffmpeg, "-c", "read x; exit 3", HOSTILE_ARG],
        cwd=hostile_cwd,
        stdin=subprocess.PIPE,
    )
    killed = spawn([shell_ffmpeg, "-c", "read x"], stdin=subprocess.PIPE)

    def state(pid):
        rows = query(db_path, "SELECT state FROM processes WHERE pid = ?", (pid,))
        return rows[0][0] if rows else None

    pump(daemon, lambda: {state(hostile.pid), state(killed.pid)} == {"attached"})
    hostile.stdin.close()
    assert hostile.wait(timeout=STATE_TIMEOUT_S) == 3
    killed.kill()
    killed.wait(timeout=STATE_TIMEOUT_S)
    pump(daemon, lambda: {state(hostile.pid), state(killed.pid)} == {"exited"})
    ((process_id, job_id),) = query(
        db_path, "SELECT id, job_id FROM processes WHERE pid = ?", (hostile.pid,)
    )
    from ffrtmp.database import open_for_writing
    from ffrtmp.errors import classify
    from ffrtmp.store import Store

    writer = Store(open_for_writing(db_path))  # an error quoting the cwd, as attach errors do
    writer.record_error(
        "attach",
        classify(OSError(2, f"No such file: {hostile_cwd}")),
        now=datetime.now(UTC),
        pid=hostile.pid,
    )
    writer.close()

    def output(*args: str, columns: int | None = None) -> bytes:
        command = [*args, "--db", str(db_path)]
        if columns:
            return run_on_a_terminal(command, columns)
        done = subprocess.run(
            [sys.executable, "-m", "ffrtmp.cli", *command],
            capture_output=True,
            timeout=60,
            env=NO_COLUMNS,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    for args in (
        ("processes", "show", str(process_id)),
        ("processes", "show", job_id),
        ("processes", "list", "-o", "id,cwd,argv"),
        ("sql", "SELECT cwd, argv FROM processes"),
        ("errors", "list"),
        ("events", "--limit", "100"),
    ):
        for columns in (None, 1000):
            out = output(*args, columns=columns)
            if columns:  # our own colours are the only escapes on a terminal
                out = re.sub(rb"\x1b\[[0-9;]*m", b"", out).replace(b"\r\n", b"\n")
            assert not CONTROL.search(out), (args, CONTROL.search(out), out)
            assert b"\\x1b]0;owned\\x07" in out, (args, out)
    shown = output("processes", "show", str(process_id)).decode()
    assert "-c 'read x; exit 3' '\\x9b2J\\u202eevil\\x1b[31m'" in shown  # argv, shell-quoted
    assert re.search(r"^exit_code +3$", shown, re.M)

    # JSON and CSV keep the data: the very bytes, escaped as each format requires.
    as_json = json.loads(output("processes", "show", job_id, "--json"))
    assert as_json["process"]["cwd"] == str(hostile_cwd)
    assert as_json["process"]["argv"][-1] == HOSTILE_ARG
    assert not CONTROL.search(output("processes", "list", "--json"))
    rows = list(csv.DictReader(io.StringIO(output("processes", "list", "--csv").decode())))
    assert {row["cwd"] for row in rows} >= {str(hostile_cwd)}
    # The real exits, found by how they ended.
    listed = json.loads(output("processes", "list", "--json", "--exit-code", "3", "-o", "pid"))
    assert listed == [{"pid": hostile.pid}]
    killed_rows = json.loads(output("processes", "list", "--json", "--signal", "KILL"))
    assert [(r["pid"], r["oom_killed"]) for r in killed_rows] == [(killed.pid, False)]
