"""A user of the original watch daemon switches in one step: its unit's command line and
environment, its config files (tests/original/, shaped like the original's example,
production and generated files) and its habits work, and mean what they meant.

The real daemons here govern only the test's own copies of `sleep` named ffmpeg and
gst-launch-1.0 (an `exe` criterion in their config: files in the test's own folder), below the
test's own cgroup. The original's files name those commands, so these copies carry production
target names (conftest.named_ffmpeg): an `ffrtmp watch` running on the machine would govern them
too.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import click
import pytest
import yaml
from cgroup_hierarchy import JobCgroups
from daemon_harness import query, scans_recorded, start_watch
from ffrtmp_commands import FFRTMP, ffrtmp
from helpers_processes import STATE_TIMEOUT_S, make_transcoder, wait_until

from ffrtmp.cli.watch import _original_habits, watch
from ffrtmp.config import ConfigError, apply_overrides, effective_dict, load_config
from ffrtmp.filters import Filters

ORIGINAL = Path(__file__).resolve().parent
EXAMPLE = ORIGINAL / "example-watch-config.yaml"
PRODUCTION = ORIGINAL / "production-watch-config.yaml"
GENERATED = ORIGINAL / "generated-watch-config.yaml"
REPO = Path(__file__).resolve().parents[2]

# The original daemon's systemd unit (deployment/systemd/ffrtmp-watch.service): its
# Environment= line and its ExecStart, whose ${VAR:-default} systemd expands from the
# EnvironmentFile (the original's watch.env, below).
ORIGINAL_UNIT_EXEC_START = (
    "/opt/ffrtmp/bin/ffrtmp watch "
    "--watch-config=${WATCH_CONFIG} "
    "--enable-state "
    "--state-path=/var/lib/ffrtmp/watch-state.json "
    "--state-flush-interval=${STATE_FLUSH_INTERVAL:-30s} "
    "--enable-retry "
    "--max-retry-attempts=${MAX_RETRY_ATTEMPTS:-5} "
    "--scan-interval=${SCAN_INTERVAL:-10s} "
    "--target=${TARGET_COMMANDS:-ffmpeg}"
)
ORIGINAL_WATCH_ENV = {
    "SCAN_INTERVAL": "10s",
    "TARGET_COMMANDS": "ffmpeg,gst-launch-1.0",  # the list written the original's way
    "STATE_FLUSH_INTERVAL": "30s",
    "MAX_RETRY_ATTEMPTS": "5",
}


def systemd_expand(command_line: str, environment: dict[str, str]) -> list[str]:
    """The argv systemd makes of an ExecStart line: ${VAR} and ${VAR:-default} replaced."""

    def value(match: re.Match) -> str:
        given = environment.get(match["name"], "")
        return given if given or match["default"] is None else match["default"]

    expanded = re.sub(r"\$\{(?P<name>\w+)(?::-(?P<default>[^}]*))?\}", value, command_line)
    return expanded.split()


def checked(path: Path) -> dict:
    """What `ffrtmp config check` prints for `path`, read back as YAML."""
    result = ffrtmp("config", "check", str(path))
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


# --- config files ---------------------------------------------------------------------------


def test_config_check_accepts_the_original_example_and_says_what_it_means() -> None:
    effective = checked(EXAMPLE)
    assert effective["scan_interval"] == "10s"
    assert effective["filters"]["max_runtime"] == "unlimited"  # the original's ""
    assert effective["filters"]["min_runtime"] == "5s"
    ffmpeg, gst = effective["commands"]["ffmpeg"], effective["commands"]["gst-launch-1.0"]
    assert ffmpeg["limits"] == {"cpu_quota": 300, "cpu_weight": 100, "memory_limit": 8192}
    # Each command's filters: its own min_runtime, every other key the global one.
    assert (ffmpeg["filters"]["min_runtime"], gst["filters"]["min_runtime"]) == ("10s", "30s")
    assert ffmpeg["filters"]["blocked_dirs"] == gst["filters"]["blocked_dirs"] == ["/tmp"]
    assert ffmpeg["filters"]["max_runtime"] == "unlimited"


def test_config_check_accepts_the_original_production_file_and_keeps_its_blocked_dirs() -> None:
    effective = checked(PRODUCTION)
    ffmpeg = effective["commands"]["ffmpeg"]
    assert ffmpeg["limits"] == {"cpu_quota": 300, "cpu_weight": 150, "memory_limit": 8192}
    assert ffmpeg["filters"]["min_runtime"] == "10s"
    assert ffmpeg["filters"]["blocked_dirs"] == ["/tmp", "/var/tmp"]  # inherited, not dropped
    config = load_config(PRODUCTION)
    assert config.filters_for("ffmpeg") == replace(config.filters, min_runtime_s=10.0)


def test_the_original_top_level_spellings_are_read_as_meant_with_one_warning_each() -> None:
    config = load_config(GENERATED)
    assert config.default_limits.cpu_quota is None  # cpu_quota: 0, the original's "unlimited"
    assert config.default_limits.memory_limit_mb == 2048
    assert (config.retry.enabled, config.retry.policy.max_attempts) == (True, 5)
    warnings = config.warnings()
    assert len(warnings) == 8
    for key, instead in [
        ("cpu_quota", "default_limits.cpu_quota"),
        ("cpu_weight", "default_limits.cpu_weight"),
        ("memory_limit", "default_limits.memory_limit"),
        ("enable_retry", "retry.enabled"),
        ("max_retry_attempts", "retry.max_attempts"),
    ]:
        (line,) = [w for w in warnings if f"'{key}'" in w]
        assert f"write {instead} instead" in line, line
    for key in ("enable_state", "state_path", "state_flush_interval"):
        (line,) = [w for w in warnings if f"'{key}'" in w]
        assert "SQLite database" in line and "drop it" in line, line

    result = ffrtmp("config", "check", str(GENERATED))
    assert result.returncode == 0
    assert result.stderr.splitlines() == [f"warning: {w}" for w in warnings]
    assert yaml.safe_load(result.stdout)["retry"]["max_attempts"] == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "cpu_quota: 100\ndefault_limits:\n  cpu_quota: 200\n",
            "line 1: 'cpu_quota' and default_limits.cpu_quota (line 3) both set "
            "default_limits.cpu_quota: keep only default_limits.cpu_quota",
        ),
        (
            "scan_interval: 5s\nmemory_limit: lots\n",
            "line 2: default_limits.memory_limit must be a whole number of MB, not 'lots'",
        ),
        ("cpu_quotas: 100\n", "line 1: unknown key 'cpu_quotas'"),
        ("retry:\n  max_retry_attempts: 5\n", "line 2: unknown key 'max_retry_attempts' in retry"),
    ],
)
def test_what_the_original_spellings_cannot_mean_is_one_sentence(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "watch.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}, {message}"
    result = ffrtmp("config", "check", str(path))
    assert (result.returncode, result.stderr) == (2, f"Error: {path}, {message}\n")


@pytest.mark.parametrize("original", [EXAMPLE, PRODUCTION, GENERATED], ids=lambda p: p.stem)
def test_config_migrate_output_passes_check_and_gives_the_same_configuration(
    tmp_path: Path, original: Path
) -> None:
    result = ffrtmp("config", "migrate", str(original))
    assert result.returncode == 0, result.stderr
    migrated = tmp_path / "watch.yaml"
    migrated.write_text(result.stdout)

    check = ffrtmp("config", "check", str(migrated))
    assert (check.returncode, check.stderr) == (0, "")  # nothing spelt the old way is left
    assert effective_dict(load_config(migrated)) == effective_dict(load_config(original))


def test_config_migrate_says_in_comments_what_changed_meaning() -> None:
    result = ffrtmp("config", "migrate", str(GENERATED))
    assert result.returncode == 0, result.stderr
    comments = [line for line in result.stdout.splitlines() if line.startswith("#")]
    body = yaml.safe_load(result.stdout)
    assert body["default_limits"] == {
        "cpu_quota": "unlimited",
        "cpu_weight": 100,
        "memory_limit": 2048,
    }
    assert body["retry"] == {"enabled": True, "max_attempts": 5}
    assert not {"cpu_quota", "enable_state", "state_path", "state_flush_interval"} & set(body)
    for key in ("cpu_quota", "enable_retry", "max_retry_attempts", "state_path"):
        assert any(key in line for line in comments), key


def test_config_migrate_of_a_bad_file_is_one_sentence_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "watch.yaml"
    path.write_text("scan_interval: soon\n")
    result = ffrtmp("config", "migrate", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"Error: {path}, line 1: scan_interval must be")


# --- no limit: 0, "" and unlimited ----------------------------------------------------------


def test_zero_and_empty_mean_no_limit_in_the_file_and_show_as_unlimited(tmp_path: Path) -> None:
    path = tmp_path / "watch.yaml"
    path.write_text(
        "default_limits: {cpu_quota: 0, memory_limit: 0}\n"
        'filters: {min_runtime: "", max_runtime: ""}\n'
        "commands:\n  ffmpeg:\n    limits: {cpu_quota: 150, memory_limit: unlimited}\n"
    )
    config = load_config(path)
    assert (config.default_limits.cpu_quota, config.default_limits.memory_limit_mb) == (None, None)
    assert config.filters == Filters(min_runtime_s=0.0, max_runtime_s=None)
    assert config.limits_for("ffmpeg").cpu_quota == 150.0
    assert config.limits_for("ffmpeg").memory_limit_mb is None
    effective = effective_dict(config)
    assert effective["default_limits"]["cpu_quota"] == "unlimited"
    assert effective["default_limits"]["memory_limit"] == "unlimited"
    assert effective["filters"]["max_runtime"] == "unlimited"
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(effective))
    assert effective_dict(load_config(again)) == effective


def test_zero_means_no_limit_in_the_flags() -> None:
    limited = load_config(None)
    limited = apply_overrides(limited, cpu_quota="150", memory_limit="512")
    assert limited.default_limits.cpu_quota == 150.0
    unlimited = apply_overrides(limited, cpu_quota="0", memory_limit="0")
    assert (unlimited.default_limits.cpu_quota, unlimited.default_limits.memory_limit_mb) == (
        None,
        None,
    )
    again = apply_overrides(limited, cpu_quota="unlimited", memory_limit="unlimited")
    assert again.default_limits == unlimited.default_limits
    with pytest.raises(ConfigError, match="--cpu-quota must be a positive percentage"):
        apply_overrides(limited, cpu_quota="-5")


def test_list_flags_split_on_commas_as_well_as_repeat() -> None:
    config = load_config(None)
    assert apply_overrides(config, target_commands=("ffmpeg,gst-launch-1.0",)).target_commands == (
        "ffmpeg",
        "gst-launch-1.0",
    )
    assert apply_overrides(
        config, target_commands=("ffmpeg, gst-launch-1.0", "HandBrakeCLI")
    ).target_commands == ("ffmpeg", "gst-launch-1.0", "HandBrakeCLI")
    with pytest.raises(ConfigError, match="--target must name at least one command"):
        apply_overrides(config, target_commands=(",",))


# --- environment variables ------------------------------------------------------------------


def _parse_watch(args: list[str]) -> click.Context:
    return watch.make_context("watch", list(args))


def test_every_watch_flag_has_an_ffrtmp_variable_and_deploy_watch_env_shows_it() -> None:
    example = (REPO / "deploy" / "watch.env").read_text()
    documented = set(re.findall(r"^#?(FFRTMP_\w+)=", example, re.MULTILINE))
    named = set()
    for param in watch.params:
        if param.name == "help":
            continue
        names = param.envvar if isinstance(param.envvar, list) else [param.envvar]
        expected = "FFRTMP_" + param.opts[0].lstrip("-").replace("-", "_").upper()
        assert names[0] == expected, (param.name, names)
        named.add(expected)
    assert named == documented


def test_the_shipped_unit_reads_an_optional_environment_file() -> None:
    from test_deploy import UNIT, read_unit

    service = read_unit(UNIT)["Service"]
    assert service["EnvironmentFile"] == ["-/etc/ffrtmp/watch.env"]  # "-": may be missing
    # Every line of the example is a comment or NAME=value, as systemd reads it.
    for line in (REPO / "deploy" / "watch.env").read_text().splitlines():
        assert not line or line.startswith("#") or re.fullmatch(r"FFRTMP_\w+=\S*", line), line


def test_variables_set_watch_flags_below_the_flags_themselves(monkeypatch) -> None:
    for name in ORIGINAL_WATCH_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FFRTMP_SCAN_INTERVAL", "3s")
    monkeypatch.setenv("SCAN_INTERVAL", "9s")  # the original's name: below FFRTMP_
    monkeypatch.setenv("FFRTMP_TARGET", "ffmpeg,gst-launch-1.0")
    monkeypatch.setenv("FFRTMP_CPU_QUOTA", "0")
    monkeypatch.setenv("FFRTMP_MEMORY_LIMIT", "1024")
    monkeypatch.setenv("FFRTMP_ENABLE_RETRY", "false")
    monkeypatch.setenv("MAX_RETRY_ATTEMPTS", "7")
    ctx = _parse_watch(["--memory-limit", "256"])
    overrides = {
        key: value
        for key, value in ctx.params.items()
        if key
        not in {
            "watch_config",
            "enable_state",
            "state_path",
            "state_flush_interval",
            "once",
            "http_address",
            "log_format",
            "log_level",
            "quiet",
            "verbose",
            "db",
            "allow_unsafe_db",
            "ship_to",
            "node_label",
            "ship_interval",
        }
    }
    config = apply_overrides(load_config(None), **overrides)
    assert config.scan_interval == 3.0
    assert config.target_commands == ("ffmpeg", "gst-launch-1.0")
    assert config.default_limits.cpu_quota is None
    assert config.default_limits.memory_limit_mb == 256  # the flag wins over the variable
    assert config.retry.enabled is False
    assert config.retry.policy.max_attempts == 7
    assert _original_habits(ctx, None) == [
        "MAX_RETRY_ATTEMPTS is the original daemon's variable, read as "
        "FFRTMP_MAX_RETRY_ATTEMPTS: set FFRTMP_MAX_RETRY_ATTEMPTS instead"
    ]


def test_the_state_flags_are_accepted_with_one_warning(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STATE_FLUSH_INTERVAL", raising=False)
    ctx = _parse_watch(
        ["--enable-state", "--state-path=/var/lib/ffrtmp/watch-state.json"]
        + ["--state-flush-interval=30s"]
    )
    db = str(tmp_path / "ffrtmp.db")
    (warning,) = _original_habits(ctx, db)
    assert warning.startswith("--enable-state, --state-path, --state-flush-interval: ignored")
    assert db in warning and "can be dropped" in warning
    assert _original_habits(_parse_watch([]), db) == []


# --- real daemons ---------------------------------------------------------------------------


def production_config(directory: Path, ffmpeg: Path) -> Path:
    """tests/original/production-watch-config.yaml, with its commands matched to the test's own
    executables only."""
    gst = make_transcoder(directory, "gst-launch-1.0")
    text = PRODUCTION.read_text()
    text += f"    match: {{exe: '{ffmpeg}'}}\n"
    text += f"  gst-launch-1.0:\n    match: {{exe: '{gst}'}}\n"
    path = directory / "watch-config.yaml"
    path.write_text(text)
    return path


def test_an_ffmpeg_in_tmp_is_skipped_under_the_original_production_config(
    tmp_path, db_path, spawn, named_ffmpeg, job_cgroups: JobCgroups
):
    """The production file blocks /tmp globally and gives ffmpeg its own min_runtime: the
    ffmpeg filters inherit blocked_dirs, so an ffmpeg working in /tmp is skipped, as the
    original skipped it, with the reason recorded."""
    config = production_config(tmp_path, named_ffmpeg)
    start_watch(spawn, db_path, config, job_cgroups.parent, "--scan-interval", "500ms")
    in_tmp = spawn([named_ffmpeg, "300"], cwd=tmp_path)

    def skipped():
        return query(
            db_path, "SELECT state, state_reason FROM processes WHERE pid = ?", (in_tmp.pid,)
        )

    wait_until(lambda: skipped() and skipped()[0][0] == "skipped", what="the /tmp ffmpeg's verdict")
    cwd = os.path.realpath(tmp_path)
    assert skipped() == [
        ("skipped", f"working directory '{cwd}' is within blocked_dirs entry '/tmp'")
    ]
    assert job_cgroups.job_of(in_tmp.pid) is None
    assert in_tmp.poll() is None


def test_watch_runs_from_the_original_unit_command_line_and_environment(
    tmp_path, db_path, spawn, named_ffmpeg, job_cgroups: JobCgroups
):
    """The original unit's ExecStart, expanded from its watch.env, runs ffrtmp: a real daemon
    that governs a real process as the production config says, and stops cleanly."""
    config = production_config(tmp_path, named_ffmpeg)
    environment = {**ORIGINAL_WATCH_ENV, "WATCH_CONFIG": str(config)}
    argv = systemd_expand(ORIGINAL_UNIT_EXEC_START, environment)
    assert argv[:2] == ["/opt/ffrtmp/bin/ffrtmp", "watch"]
    # The test's database and cgroup come from ffrtmp's own variables, so the command line
    # stays exactly the original's.
    daemon_env = {
        **os.environ,
        **environment,
        "FFRTMP_DB": str(db_path),
        "FFRTMP_CGROUP_PARENT": job_cgroups.parent,
    }
    daemon = spawn(
        [*FFRTMP, *argv[1:]], wait_exec=False, env=daemon_env, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(lambda: scans_recorded(db_path) or daemon.poll() is not None, what="a scan")
        assert daemon.poll() is None, daemon.stderr.read()
        # Working outside /tmp (which the config blocks), for longer than ffmpeg's 10s.
        stream = spawn([named_ffmpeg, "300"], cwd="/")
        wait_until(
            lambda: (
                query(db_path, "SELECT state FROM processes WHERE pid = ?", (stream.pid,))
                == [("attached",)]
            ),
            what="the ffmpeg governed after its min_runtime",
        )
        ((job_id, quota, memory),) = query(
            db_path,
            "SELECT job_id, applied_cpu_quota, applied_memory_limit_mb FROM processes "
            "WHERE pid = ?",
            (stream.pid,),
        )
        assert (quota, memory) == (300.0, 8192)  # commands.ffmpeg.limits
        assert job_cgroups.job_of(stream.pid) == job_id
        assert job_cgroups.cpu_quota(job_id) == 300.0
        ((recorded,),) = query(db_path, "SELECT config FROM daemon_runs")
        recorded = json.loads(recorded)
        assert recorded["target_commands"] == ["ffmpeg", "gst-launch-1.0"]
        assert recorded["scan_interval"] == "10s"
        assert recorded["retry"]["max_attempts"] == 5
        assert recorded["retry"]["enabled"] is True

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=STATE_TIMEOUT_S) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    log = daemon.stderr.read()
    assert "--enable-state, --state-path, --state-flush-interval: ignored" in log
    assert query(db_path, "SELECT stop_reason FROM daemon_runs") == [("stopped",)]
    assert stream.poll() is None  # the daemon stopped; what it governs runs on


# --- attach --nice, run --nice --------------------------------------------------------------

THREADED = (
    "import threading, time\n"
    "for _ in range(3):\n"
    "    threading.Thread(target=time.sleep, args=(300,), daemon=True).start()\n"
    "print('ready', flush=True)\n"
    "time.sleep(300)\n"
)


def thread_nice_values(pid: int) -> dict[int, int]:
    """The nice value of each thread of `pid`, from the kernel's own stat files."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        found[int(tid)] = int(fields[16])  # field 19 of stat: nice
    return found


def test_attach_nice_sets_every_thread_of_the_process(db_path, spawn, job_cgroups: JobCgroups):
    child = spawn([sys.executable, "-c", THREADED], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "ready\n"
    assert len(thread_nice_values(child.pid)) == 4
    result = ffrtmp(
        "attach",
        "--pid",
        str(child.pid),
        "--nice",
        "7",
        "--force",  # a python child: no target command
        "--json",
        "--db",
        str(db_path),
        "--cgroup-parent",
        job_cgroups.parent,
    )
    assert result.returncode == 0, result.stderr
    assert set(thread_nice_values(child.pid).values()) == {7}
    assert json.loads(result.stdout)["nice"] == 7
    ((state, job_id),) = query(db_path, "SELECT state, job_id FROM processes")
    assert state == "attached"
    assert job_cgroups.job_of(child.pid) == job_id


def test_attach_nice_out_of_range_is_refused_before_anything_changes(db_path, spawn):
    child = spawn(["sleep", "30"])
    result = ffrtmp("attach", "--pid", str(child.pid), "--nice", "20", "--db", str(db_path))
    assert result.returncode == 2
    assert "--nice" in result.stderr and "20" in result.stderr
    assert thread_nice_values(child.pid) == {child.pid: os.nice(0)}  # as it started
    assert not db_path.exists()


def test_run_nice_is_kept(db_path, real_cgroup_parent):
    result = ffrtmp(
        "run",
        "--nice",
        "5",
        "--db",
        str(db_path),
        "--cgroup-parent",
        real_cgroup_parent,
        "--",
        sys.executable,
        "-c",
        "import os, sys; sys.exit(os.nice(0))",
    )
    assert result.returncode == min(19, os.nice(0) + 5), result.stderr  # nice adds up
