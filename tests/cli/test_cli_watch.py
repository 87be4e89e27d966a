"""The daemon's commands as an operator runs them: real subprocesses, real cgroups, the
database read back with plain SQL.

None of them runs on cgroup v2 in the VM (`make test-v2`): each start of the CLI spends some
20 s importing there, under the emulated CPU. Discovery, attach, exits and the OOM kill on v2
are test_watch.py's, with the daemon in the test's own process; a real `ffrtmp watch` killed
and started again is test_crash.py's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import parts
import pytest
from cgroup_hierarchy import JobCgroups
from daemon_harness import query, scans_recorded, write_config
from ffrtmp_commands import FFRTMP, ffrtmp
from helpers_processes import STATE_TIMEOUT_S, wait_until


def test_watch_once_attaches_what_it_finds(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder
):
    child = spawn([transcoder, "30"])
    config = write_config(tmp_path, transcoder)
    result = ffrtmp(
        "watch",
        "--once",
        "--db",
        str(db_path),
        "--watch-config",
        str(config),
        "--cgroup-parent",
        job_cgroups.parent,
        "--cpu-quota",
        "25",
    )
    assert result.returncode == 0, result.stderr
    rows = query(db_path, "SELECT pid, state, applied_cpu_quota, job_id FROM processes")
    assert rows == [(child.pid, "attached", 25.0, rows[0][3])]
    assert job_cgroups.job_of(child.pid) == rows[0][3]
    assert job_cgroups.cpu_quota(rows[0][3]) == 25.0
    assert child.poll() is None  # the daemon ended; what it governs runs on
    assert query(db_path, "SELECT count(*), min(ok) FROM scans") == [(1, 1)]
    assert query(db_path, "SELECT stop_reason FROM daemon_runs") == [("once",)]


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("scan_interval: -5s\n", "line 1: scan_interval must be a positive duration"),
        ("default_limits:\n  cpu_weight: 20000\n", "line 2: default_limits.cpu_weight"),
        ("filters:\n  alowed_users: [a]\n", "line 2: unknown key 'alowed_users'"),
    ],
)
def test_bad_watch_config_exits_2_and_writes_nothing(tmp_path, db_path, yaml_text, message):
    config = tmp_path / "watch.yaml"
    config.write_text(yaml_text)
    result = ffrtmp("watch", "--once", "--db", str(db_path), "--watch-config", str(config))
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert not db_path.exists() and not db_path.parent.exists()


def test_bad_flag_exits_2(db_path):
    result = ffrtmp("watch", "--once", "--db", str(db_path), "--scan-interval", "10 parsecs")
    assert result.returncode == 2
    assert "--scan-interval" in result.stderr
    assert not db_path.exists()


def test_run_passes_the_exit_code_on_and_records_it(db_path, job_cgroups: JobCgroups):
    result = ffrtmp(
        "run",
        "--db",
        str(db_path),
        "--cgroup-parent",
        job_cgroups.parent,
        "--cpu-quota",
        "50",
        "--json",
        "--",
        "sh",
        "-c",
        "cat /proc/self/cgroup; exit 3",
    )
    assert result.returncode == 3, result.stderr
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["exit_code"] == 3 and summary["exit_signal"] is None
    # The command saw itself in its job cgroup from its first instruction.
    assert f"{job_cgroups.parent}/{summary['job_id']}" in result.stdout
    rows = query(db_path, "SELECT state, exit_code, applied_cpu_quota FROM processes")
    assert rows == [("exited", 3, 50.0)]
    assert job_cgroups.names() == []  # its job cgroup removed once it ended


def test_run_reports_a_killing_signal_as_128_plus_n(db_path, real_cgroup_parent):
    result = ffrtmp(
        "run",
        "--db",
        str(db_path),
        "--cgroup-parent",
        real_cgroup_parent,
        "--",
        "sh",
        "-c",
        "kill -9 $$",
    )
    assert result.returncode == 128 + 9
    assert query(db_path, "SELECT exit_code, exit_signal FROM processes") == [(None, 9)]


def test_attach_by_pid_governs_and_records(db_path, spawn, job_cgroups: JobCgroups, named_ffmpeg):
    child = spawn([named_ffmpeg, "30"])  # a default target: attach takes it without --force
    result = ffrtmp(
        "attach",
        "--pid",
        str(child.pid),
        "--db",
        str(db_path),
        "--cgroup-parent",
        job_cgroups.parent,
        "--memory-limit",
        "128",
    )
    assert result.returncode == 0, result.stderr
    ((state, job_id, memory),) = query(
        db_path, "SELECT state, job_id, applied_memory_limit_mb FROM processes"
    )
    assert (state, memory) == ("attached", 128)
    assert job_cgroups.job_of(child.pid) == job_id
    assert job_cgroups.memory_limit_mb(job_id) == 128
    assert child.poll() is None


def test_attach_of_a_missing_pid_is_one_sentence(db_path):
    result = ffrtmp("attach", "--pid", "999999999", "--db", str(db_path))
    assert result.returncode == 1
    assert result.stderr == "Error: no process with pid 999999999 that ffrtmp may govern\n"
    assert not db_path.exists()


def test_real_ffmpeg_is_discovered_limited_and_its_exit_code_0_recorded(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups
):
    """ffmpeg encodes a synthetic source to a null output while `ffrtmp watch` runs."""
    if shutil.which("ffmpeg") is None:
        parts.skip(parts.REAL_FFMPEG, "ffmpeg is not installed")
    ffmpeg = Path(shutil.which("ffmpeg")).resolve()
    # The real binary is the machine's too: the daemon takes only the ffmpeg this test starts.
    config = write_config(
        tmp_path,
        ffmpeg,
        f"scan_interval: 200ms\nfilters: {{allowed_parents: [{os.getpid()}]}}\n",
        command="ffmpeg",
    )
    daemon = spawn(
        [
            *FFRTMP,
            "watch",
            "--db",
            str(db_path),
            "--watch-config",
            str(config),
            "--cgroup-parent",
            job_cgroups.parent,
            "--cpu-quota",
            "50",
            "--memory-limit",
            "512",
        ],
        wait_exec=False,
    )

    wait_until(
        lambda: scans_recorded(db_path), timeout=STATE_TIMEOUT_S, what="the daemon's first scan"
    )
    source = "testsrc=duration=3:size=320x240:rate=25"
    encoder_started = time.monotonic()
    encoder = spawn(
        [
            ffmpeg,
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            source,
            "-f",
            "null",
            "-",
        ]
    )
    wait_until(
        lambda: (
            query(db_path, "SELECT state FROM processes WHERE pid = ?", (encoder.pid,))
            == [("attached",)]
        ),
        timeout=STATE_TIMEOUT_S,
        what="ffmpeg attached",
    )
    job_id = query(db_path, "SELECT job_id FROM processes WHERE pid = ?", (encoder.pid,))[0][0]
    assert job_cgroups.job_of(encoder.pid) == job_id
    assert job_cgroups.limits(job_id) == (50.0, 100, 512)
    assert encoder.wait(timeout=60) == 0
    encoder_wall_s = time.monotonic() - encoder_started
    wait_until(
        lambda: (
            query(db_path, "SELECT state, exit_code FROM processes WHERE pid = ?", (encoder.pid,))
            == [("exited", 0)]
        ),
        timeout=STATE_TIMEOUT_S,
        what="exit recorded",
    )
    ((quota, memory, cpu_seconds),) = query(
        db_path,
        "SELECT applied_cpu_quota, applied_memory_limit_mb, cpu_seconds FROM processes"
        " WHERE pid = ?",
        (encoder.pid,),
    )
    assert (quota, memory) == (50.0, 512)
    # The job cgroup's CPU time: an encode costs some, and no more than its cores could give
    # over its lifetime (a unit mixed up, ns or ms for s, is off by 1000 either way).
    assert cpu_seconds is not None
    assert 0 < cpu_seconds <= encoder_wall_s * os.cpu_count()
    daemon.terminate()
    assert daemon.wait(timeout=20) == 0
    assert query(db_path, "SELECT stop_reason FROM daemon_runs") == [("stopped",)]


def test_sighup_reloads_the_config_and_a_bad_file_keeps_the_old_one(
    tmp_path, db_path, spawn, real_cgroup_parent, transcoder
):
    import signal

    config = write_config(tmp_path, transcoder, "default_limits: {cpu_weight: 300}\n")
    daemon = spawn(
        [
            *FFRTMP,
            "watch",
            "--db",
            str(db_path),
            "--watch-config",
            str(config),
            "--cgroup-parent",
            real_cgroup_parent,
            "--scan-interval",
            "200ms",
        ],
        wait_exec=False,
        stderr=subprocess.DEVNULL,
    )
    wait_until(
        lambda: scans_recorded(db_path), timeout=STATE_TIMEOUT_S, what="the daemon's first scan"
    )

    def weight_of(pid: int):
        rows = query(db_path, "SELECT applied_cpu_weight FROM processes WHERE pid = ?", (pid,))
        return rows[0][0] if rows else None

    first = spawn([transcoder, "30"])
    wait_until(lambda: weight_of(first.pid) == 300, timeout=STATE_TIMEOUT_S, what="first attach")

    config.write_text(config.read_text() + "bogus_key: 1\n")
    daemon.send_signal(signal.SIGHUP)
    wait_until(
        lambda: (
            query(db_path, "SELECT count(*) FROM error_events WHERE operation = 'config'")[0][0]
            == 1
        ),
        timeout=STATE_TIMEOUT_S,
        what="the refused reload recorded",
    )
    second = spawn([transcoder, "31"])
    wait_until(
        lambda: weight_of(second.pid) == 300, timeout=STATE_TIMEOUT_S, what="old config kept"
    )

    config.write_text(config.read_text().replace("bogus_key: 1\n", "").replace("300", "700"))
    daemon.send_signal(signal.SIGHUP)

    def recorded_default_weight() -> int:
        ((config_json,),) = query(db_path, "SELECT config FROM daemon_runs")
        return json.loads(config_json)["default_limits"]["cpu_weight"]

    # A reload rewrites the run's effective configuration: the state to wait on.
    wait_until(lambda: recorded_default_weight() == 700, timeout=STATE_TIMEOUT_S, what="the reload")
    third = spawn([transcoder, "32"])
    wait_until(
        lambda: weight_of(third.pid) == 700, timeout=STATE_TIMEOUT_S, what="new config applied"
    )
    assert daemon.poll() is None
    daemon.terminate()
    assert daemon.wait(timeout=20) == 0
    assert query(db_path, "SELECT state FROM processes ORDER BY pid") == [("detached",)] * 3


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_running_daemon_serves_healthz_and_metrics(
    tmp_path, db_path, spawn, real_cgroup_parent, transcoder
):
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    port = free_port()
    config = write_config(tmp_path, transcoder)
    spawn(
        [
            *FFRTMP,
            "watch",
            "--db",
            str(db_path),
            "--watch-config",
            str(config),
            "--cgroup-parent",
            real_cgroup_parent,
            "--http",
            f"127.0.0.1:{port}",
        ],
        wait_exec=False,
        stderr=subprocess.DEVNULL,
    )
    wait_until(
        lambda: scans_recorded(db_path), timeout=STATE_TIMEOUT_S, what="the daemon's first scan"
    )
    child = spawn([transcoder, "30"])
    wait_until(
        lambda: (
            query(db_path, "SELECT state FROM processes WHERE pid = ?", (child.pid,))
            == [("attached",)]
        ),
        timeout=STATE_TIMEOUT_S,
    )
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/health+json")
        assert json.loads(response.read())["status"] == "pass"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    assert families["ffrtmp_processes_attached"].samples[0].value == 1
    assert families["ffrtmp_processes_discovered"].samples[0].value == 1
    assert families["ffrtmp_health_status"].samples[0].value == 0


def test_bad_http_address_is_refused_before_the_database_is_created(db_path):
    result = ffrtmp("watch", "--once", "--db", str(db_path), "--http", "localhost:http")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: --http localhost:http: ")
    assert not db_path.exists()


def test_bad_failpoint_spec_is_one_sentence_and_exit_2(db_path):
    env = {**os.environ, "FFRTMP_FAILPOINTS": "governor.attach=EBUSYX*2"}
    result = ffrtmp("watch", "--once", "--db", str(db_path), env=env)
    assert result.returncode == 2
    assert result.stderr.endswith(
        "Error: FFRTMP_FAILPOINTS: 'EBUSYX' in 'governor.attach=EBUSYX*2' is not an errno name\n"
    )
    assert not db_path.exists()


def test_scan_dry_run_lists_what_would_be_attached_and_what_is_filtered_out(
    tmp_path, db_path, spawn, transcoder
):
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    allowed.mkdir()
    other.mkdir()
    config = write_config(
        tmp_path,
        transcoder,
        f"default_limits: {{cpu_quota: 150, memory_limit: 2048}}\n"
        f"filters: {{allowed_dirs: ['{allowed}']}}\n",
    )
    inside = spawn([transcoder, "30"], cwd=allowed)
    outside = spawn([transcoder, "31"], cwd=other)
    result = ffrtmp("scan", "--watch-config", str(config), "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["pid"]: row for row in json.loads(result.stdout)}
    assert rows[inside.pid]["decision"] == "attach"
    # Written as the daemon's log writes limits (Limits.describe), units and all.
    assert rows[inside.pid]["limits"] == "cpu 150%, weight 100, memory 2048 MiB"
    assert rows[outside.pid]["decision"] == "skip"
    assert str(other) in rows[outside.pid]["reason"]
    assert not db_path.exists()  # a dry run writes nothing


def test_json_logs_are_one_object_per_line(db_path, real_cgroup_parent):
    result = ffrtmp(
        "watch",
        "--once",
        "--db",
        str(db_path),
        "--target",
        "no-such-command-x",
        "--cgroup-parent",
        real_cgroup_parent,
        "--log-format",
        "json",
    )
    assert result.returncode == 0
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert entries and all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    logged = [e["message"] for e in entries if e["logger"] == "ffrtmp.daemon"]
    settings = [e["data"] for e in entries if e["message"] == "effective configuration"]
    assert len(settings) == 1  # one object, not a line per setting
    assert settings[0]["target_commands"] == ["no-such-command-x"]
    assert logged[-1].startswith("once: 0 matched, 0 new;")
    assert query(db_path, "SELECT once FROM daemon_runs") == [(1,)]


# Where the kernel shows a thread asleep in select()/pselect6() (/proc/PID/wchan), by version.
SELECT_SLEEPS = ("poll_schedule_timeout", "do_select", "core_sys_select")


def asleep_in_select(pid: int) -> bool:
    wchan = Path(f"/proc/{pid}/wchan").read_text()
    return wchan.split(".")[0] in SELECT_SLEEPS


@pytest.mark.parametrize("discovery", ["events", "poll"])
def test_sigterm_stops_an_idle_daemon_at_once(
    tmp_path, db_path, spawn, real_cgroup_parent, transcoder, discovery
):
    """The loop may be waiting for a minute; a signal must end the wait, not the next event."""
    import signal

    config = write_config(tmp_path, transcoder)
    argv = [
        *FFRTMP,
        "watch",
        "--db",
        str(db_path),
        "--watch-config",
        str(config),
        "--cgroup-parent",
        real_cgroup_parent,
        "--scan-interval",
        "60s",
        "--discovery",
        discovery,
    ]
    daemon = spawn(argv, wait_exec=False, stderr=subprocess.DEVNULL)
    wait_until(
        lambda: scans_recorded(db_path), timeout=STATE_TIMEOUT_S, what="the daemon's first scan"
    )
    # Into its long wait: the main thread asleep in the loop's select(), as the kernel shows it
    # (wchan) once the start-up work is done.
    wait_until(lambda: asleep_in_select(daemon.pid), what="the daemon's loop to wait in select()")
    sent = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=20) == 0
    assert time.monotonic() - sent < 2.0
    assert query(db_path, "SELECT stop_reason FROM daemon_runs") == [("stopped",)]


def test_the_log_of_a_once_run_reads_as_an_operator_would_write_it(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder
):
    """Failpoints named first; the configuration one setting a line; limits and exits in
    words; a one-line summary at the end. The rows say what the lines say."""
    child = spawn([transcoder, "30"])
    env = {**os.environ, "FFRTMP_FAILPOINTS": "proc_events.recv=EIO*2"}
    result = ffrtmp(
        "watch",
        "--once",
        "--db",
        str(db_path),
        "--watch-config",
        str(write_config(tmp_path, transcoder)),
        "--cgroup-parent",
        job_cgroups.parent,
        "--cpu-quota",
        "50",
        "--memory-limit",
        "256",
        "--discovery",
        "poll",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert query(db_path, "SELECT pid, state FROM processes") == [(child.pid, "attached")]
    messages = [line.split(": ", 1)[1] for line in result.stderr.splitlines()]
    assert messages[0] == (
        "failpoint armed (FFRTMP_FAILPOINTS): proc_events.recv fails with EIO 2 more times; "
        "errors it injects are not real ones"
    )
    # One line says the configuration at start-up; each setting is said only at DEBUG.
    [configuration] = [m for m in messages if m.startswith("effective configuration")]
    assert "default_limits (cpu_quota 50, cpu_weight 100, memory_limit 256)" in configuration
    assert "scan_interval 10s" in configuration
    attached = [m for m in messages if m.startswith("attached ")]
    assert len(attached) == 1
    assert attached[0].endswith(": cpu 50%, weight 100, memory 256 MiB")
    assert messages[-1] == (
        "once: 1 matched, 1 new; 1 attached, 0 retrying, 0 dead letters, 0 skipped, "
        "0 followed without limits, 0 vanished; health healthy"
    )
    assert not any("Limits(" in m or "signal None" in m for m in messages)
