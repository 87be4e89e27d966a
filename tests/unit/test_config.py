"""The watch config: parsing, every validation message with its line, filters, precedence."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from candidates import make_candidate
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ffrtmp import defaults
from ffrtmp.candidate import Candidate
from ffrtmp.cli import main as cli
from ffrtmp.config import (
    CommandConfig,
    ConfigError,
    MatchCriteria,
    WatchConfig,
    apply_overrides,
    effective_dict,
    load_config,
)
from ffrtmp.filters import Decision, Filters
from ffrtmp.identity import ProcessIdentity, current_identity
from ffrtmp.limits import Limits

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "watch-config.yaml"
HYPOTHESIS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def write(directory: Path, text: str, name: str = "watch.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value)


def candidate(
    rule: str = "ffmpeg",
    *,
    user: str | None = "media",
    uid: int | None = 1000,
    cwd: str | None = "/srv/media",
    ppid: int = 1,
    parent_command: str | None = "systemd",
    identity: ProcessIdentity | None = None,
) -> Candidate:
    return make_candidate(
        4242,
        1000,
        identity=identity,
        command=rule,
        argv=(rule, "-i", "in.flv"),
        ppid=ppid,
        uid=uid,
        user=user,
        cwd=cwd,
        parent_command=parent_command,
    )


# --- loading ------------------------------------------------------------------------------


def test_no_file_and_an_empty_file_give_the_defaults(tmp_path: Path) -> None:
    assert load_config(None) == WatchConfig()
    empty = write(tmp_path, "# nothing set\n")
    config = load_config(empty)
    assert replace(config, source=None) == WatchConfig()
    assert config.source == empty
    assert config.scan_interval == defaults.SCAN_INTERVAL_SECONDS
    assert config.target_commands == defaults.TARGET_COMMANDS
    assert config.default_limits == Limits()
    assert config.retry.policy.max_attempts == defaults.RETRY_MAX_ATTEMPTS
    assert config.cgroup.version == defaults.CGROUP_VERSION


def test_every_section_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        scan_interval: 1m30s
        target_commands: [ffmpeg]
        discovery: poll
        default_limits: {cpu_quota: "50%", cpu_weight: 200, memory_limit: 512}
        filters:
          allowed_users: [media]
          blocked_uids: [0]
          allowed_parents: [supervisord, 1]
          min_runtime: 500ms
          max_runtime: 2h
          blocked_dirs: [/tmp/]
        retry: {enabled: false, max_attempts: 7, initial_delay: 2s, multiplier: 3,
                max_delay: 1m, jitter: 0}
        health: {degraded_scan_failures: 2, degraded_attach_failures: 4,
                 unhealthy_scan_failures: 6, stale_scan_after: 90, snapshot_interval: 15s}
        retention: 7d
        cgroup: {root: /tmp/cg, parent: media/ffrtmp, version: v1}
        """,
    )
    config = load_config(path)
    assert config.scan_interval == 90.0
    assert config.discovery == "poll"
    assert config.default_limits == Limits(cpu_quota=50.0, cpu_weight=200, memory_limit_mb=512)
    assert config.filters == Filters(
        allowed_users=("media",),
        blocked_uids=(0,),
        allowed_parents=("supervisord", 1),
        min_runtime_s=0.5,
        max_runtime_s=7200.0,
        blocked_dirs=("/tmp",),
    )
    assert (config.retry.enabled, config.retry.policy.max_attempts, config.retry.policy.jitter) == (
        False,
        7,
        0,
    )
    assert config.retry.policy.base_delay(2) == 6.0
    assert config.health.thresholds.stale_scan_after == 90.0
    assert config.health.snapshot_interval == 15.0
    assert config.retention_s == 7 * 86400
    assert (str(config.cgroup.root), config.cgroup.parent, config.cgroup.version) == (
        "/tmp/cg",
        "media/ffrtmp",
        "v1",
    )


# Each case: the file, then the error after "<file>, " — the line is part of the promise.
VALIDATION_ERRORS = [
    ("scan_interval: -5s\n", "line 1: scan_interval must be a positive duration, not '-5s'"),
    ("scan_interval: 0\n", "line 1: scan_interval must be a positive duration, not 0"),
    (
        "scan_interval: 10 sec\n",
        "line 1: scan_interval must be a positive duration, not '10 sec' "
        "(write durations like 500ms, 10s or 1m30s)",
    ),
    ("scan_interval: [10]\n", "line 1: scan_interval must be a positive duration, not a list"),
    ("scan_interval: .inf\n", "line 1: scan_interval must be a positive duration, not inf"),
    (
        "# limits\n\n\n\n\ndefault_limits:\n  cpu_quotaa: 50\n",
        "line 7: unknown key 'cpu_quotaa' in default_limits",
    ),
    ("scan_intervall: 5s\n", "line 1: unknown key 'scan_intervall'"),
    (
        "default_limits:\n  cpu_weight: 20000\n",
        "line 2: default_limits.cpu_weight must be between 1 and 10000, not 20000",
    ),
    (
        "default_limits:\n  cpu_weight: high\n",
        "line 2: default_limits.cpu_weight must be a whole number, not 'high'",
    ),
    (
        "default_limits:\n  memory_limit: -1\n",
        "line 2: default_limits.memory_limit must be at least 1 MB, not -1",
    ),
    (
        "default_limits:\n  memory_limit: 2G\n",
        "line 2: default_limits.memory_limit must be a whole number of MB, not '2G'",
    ),
    (
        "default_limits:\n  cpu_quota: -5\n",
        "line 2: default_limits.cpu_quota must be a positive percentage of one core, not -5",
    ),
    ("default_limits: [1]\n", "line 1: default_limits must be a mapping, not a list"),
    ("target_commands: ffmpeg\n", "line 1: target_commands must be a list, not 'ffmpeg'"),
    ("target_commands: []\n", "line 1: target_commands must name at least one command"),
    (
        "target_commands:\n  - ffmpeg\n  - /usr/bin/ffmpeg\n",
        "line 3: target_commands[1] must be a command name (the basename of argv[0], "
        "without '/'), not '/usr/bin/ffmpeg'",
    ),
    (
        "target_commands: [ffmpeg, ffmpeg]\n",
        "line 1: target_commands lists 'ffmpeg' twice",
    ),
    ("discovery: inotify\n", "line 1: discovery must be one of events, poll, auto, not 'inotify'"),
    (
        "filters:\n  allowed_uids: [1000, abc]\n",
        "line 2: filters.allowed_uids[1] must be a uid (a whole number of 0 or more), not 'abc'",
    ),
    (
        "filters:\n  allowed_users:\n    - 1000\n",
        "line 3: filters.allowed_users[0] must be a user name, not 1000",
    ),
    (
        "filters:\n  allowed_dirs: [srv]\n",
        "line 2: filters.allowed_dirs[0] must be an absolute path, not 'srv'",
    ),
    (
        "filters:\n  min_runtime: 1m\n  max_runtime: 30s\n",
        "line 3: filters.max_runtime must be longer than min_runtime (1m), not 30s",
    ),
    (
        "filters:\n  min_runtime: -1s\n",
        "line 2: filters.min_runtime must be a duration of zero or more, not '-1s'",
    ),
    (
        "commands:\n  ffmpeg:\n    limits:\n      cpu_weight: 0\n",
        "line 4: commands.ffmpeg.limits.cpu_weight must be between 1 and 10000, not 0",
    ),
    ("commands:\n  ffmpeg:\n    limit: {}\n", "line 3: unknown key 'limit' in commands.ffmpeg"),
    (
        "commands:\n  ffmpeg:\n    filters:\n      blocked_user: [bob]\n",
        "line 4: unknown key 'blocked_user' in commands.ffmpeg.filters",
    ),
    (
        "commands:\n  ffmpeg:\n    match: {path: /usr/bin/ffmpeg}\n",
        "line 3: unknown key 'path' in commands.ffmpeg.match",
    ),
    (
        "commands:\n  ffmpeg:\n    match:\n      cmdline_regex: '(flv'\n",
        "line 4: commands.ffmpeg.match.cmdline_regex must be a regular expression, not '(flv' "
        "(missing ), unterminated subpattern at position 0)",
    ),
    (
        "commands:\n  /usr/bin/ffmpeg: {}\n",
        "line 2: commands key must be a command name (the basename of argv[0], without '/'), "
        "not '/usr/bin/ffmpeg'",
    ),
    ("retry:\n  jitter: 1\n", "line 2: retry.jitter must be at least 0 and below 1, not 1"),
    ("retry:\n  enabled: maybe\n", "line 2: retry.enabled must be true or false, not 'maybe'"),
    ("retry:\n  max_attempts: 0\n", "line 2: retry.max_attempts must be at least 1, not 0"),
    ("retry:\n  multiplier: 0.5\n", "line 2: retry.multiplier must be at least 1, not 0.5"),
    (
        "retry:\n  initial_delay: 10m\n",
        "line 2: retry.max_delay must not be shorter than initial_delay (10m), not 5m",
    ),
    (
        "health:\n  degraded_scan_failures: 4\n  unhealthy_scan_failures: 2\n",
        "line 3: health.unhealthy_scan_failures must not be below degraded_scan_failures (4), "
        "not 2",
    ),
    ("health:\n  stale_scan: 2m\n", "line 2: unknown key 'stale_scan' in health"),
    (
        "retention: forever\n",
        "line 1: retention must be a positive duration, not 'forever' "
        "(write durations like 500ms, 10s or 1m30s)",
    ),
    (
        "cgroup:\n  parent: ../escape\n",
        "line 2: cgroup.parent must be a cgroup name relative to the cgroup root, such as "
        "'ffrtmp', not '../escape'",
    ),
    ("cgroup:\n  version: v3\n", "line 2: cgroup.version must be one of auto, v1, v2, not 'v3'"),
    ("scan_interval: 5s\nscan_interval: 6s\n", "line 2: duplicate key 'scan_interval'"),
    ("1: a\n", "line 1: keys must be plain names, not '1'"),
    ("- ffmpeg\n", "line 1: the file must be a mapping of keys, not a list"),
    (
        "scan_interval: 5s\n  bad: indent\n",
        "line 2: invalid YAML: mapping values are not allowed here",
    ),
    (
        "a: [1, 2\nb: 3\n",
        "line 2: invalid YAML: while parsing a flow sequence, expected ',' or ']', but got ':'",
    ),
    (
        "a: 1\n---\nb: 2\n",
        "line 2: invalid YAML: expected a single document in the stream, "
        "but found another document",
    ),
]


@pytest.mark.parametrize(("text", "expected"), VALIDATION_ERRORS)
def test_each_error_is_one_sentence_naming_file_line_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "watch.yaml"
    path.write_text(text)
    message = error_of(path)
    assert message == f"{path}, {expected}"
    assert "\n" not in message


def test_a_missing_or_unreadable_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert error_of(missing) == f"{missing} cannot be read: No such file or directory"
    assert error_of(tmp_path) == f"{tmp_path} cannot be read: Is a directory"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"scan_interval: \xff\xfe\n")
    assert error_of(binary) == f"{binary} cannot be read: it is not UTF-8 text"


# --- commands, rules and limits ------------------------------------------------------------


def test_per_command_limits_are_merged_over_default_limits(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """\
            default_limits: {cpu_quota: 100, cpu_weight: 300, memory_limit: 1024}
            commands:
              ffmpeg:
                limits: {cpu_quota: 250}
              gst-launch-1.0:
                limits: {memory_limit: null}
            """,
        )
    )
    assert config.limits_for("ffmpeg") == Limits(
        cpu_quota=250, cpu_weight=300, memory_limit_mb=1024
    )
    assert config.limits_for("gst-launch-1.0") == Limits(
        cpu_quota=100, cpu_weight=300, memory_limit_mb=None
    )
    assert config.limits_for("not-configured") == config.default_limits
    assert config.limits_for("ffmpeg").cpu_quota_us == 250_000


def test_a_configured_command_is_a_target_and_its_match_criteria_join_its_rule(
    tmp_path: Path,
) -> None:
    config = load_config(
        write(
            tmp_path,
            """\
            target_commands: [ffmpeg]
            commands:
              ffmpeg:
                match: {exe: /usr/bin/ffmpeg, cmdline_regex: "-f flv"}
              ffprobe:
                limits: {cpu_weight: 10}
            """,
        )
    )
    assert config.target_commands == ("ffmpeg", "ffprobe")
    rules = {rule.name: rule for rule in config.rules()}
    assert set(rules) == {"ffmpeg", "ffprobe"}
    ffmpeg = rules["ffmpeg"]
    argv = ("/opt/x/ffmpeg", "-i", "in", "-f", "flv", "rtmp://out")
    assert ffmpeg.matches(argv, exe="/usr/bin/ffmpeg")
    assert not ffmpeg.matches(argv, exe="/opt/x/ffmpeg")
    assert not ffmpeg.matches(("ffmpeg", "-f", "mp4", "out.mp4"), exe="/usr/bin/ffmpeg")
    assert rules["ffprobe"].matches(("ffprobe", "x"))
    assert rules["ffprobe"].exe is None and rules["ffprobe"].cmdline_regex is None


def test_the_default_rules_follow_the_default_targets() -> None:
    rules = WatchConfig().rules()
    assert [r.name for r in rules] == list(defaults.TARGET_COMMANDS)
    assert rules[0].matches(("/usr/bin/ffmpeg", "-i", "x"))
    assert not rules[0].matches(("/usr/bin/ffmpegx", "-i", "x"))


# --- filters ----------------------------------------------------------------------------------


def test_per_command_filters_are_merged_key_by_key_over_the_global_ones(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """\
            filters:
              blocked_users: [mallory]
              allowed_dirs: [/srv]
              min_runtime: 5s
            commands:
              ffmpeg:
                filters:
                  allowed_users: [alice]
                  min_runtime: ""
            """,
        )
    )
    ffmpeg = config.filters_for("ffmpeg")
    # Its own keys replace those keys; every other key is the global one.
    assert ffmpeg == Filters(
        allowed_users=("alice",), blocked_users=("mallory",), allowed_dirs=("/srv",)
    )
    assert config.filters_for("gst-launch-1.0") == config.filters
    alice_at_home = config.evaluate(
        candidate("ffmpeg", user="alice", cwd="/home/alice"), since_boot=0
    )
    assert (alice_at_home.decision, alice_at_home.reason) == (
        Decision.SKIP,
        "working directory '/home/alice' is not within any of allowed_dirs",
    )
    alice = candidate("ffmpeg", user="alice", cwd="/srv/live")
    assert config.evaluate(alice, since_boot=0).decision == Decision.ATTACH
    bob = config.evaluate(candidate("ffmpeg", user="bob", cwd="/srv/live"), since_boot=0)
    assert (bob.decision, bob.reason) == (Decision.SKIP, "user 'bob' is not in allowed_users")
    # The printed configuration spells out each command's whole filters, and reads back.
    printed = effective_dict(config)["commands"]["ffmpeg"]["filters"]
    assert printed["blocked_users"] == ["mallory"] and printed["allowed_users"] == ["alice"]
    again = write(tmp_path, yaml.safe_dump(effective_dict(config), sort_keys=False))
    assert replace(load_config(again), source=None) == replace(config, source=None)


@pytest.mark.parametrize(
    ("cwd", "decision"),
    [
        ("/srv/a", Decision.ATTACH),
        ("/srv/a/", Decision.ATTACH),
        ("/srv/a/live/x", Decision.ATTACH),
        ("/srv/ab", Decision.SKIP),
        ("/srv", Decision.SKIP),
        ("/srv/a/tmp", Decision.SKIP),
        ("/srv/a/tmpfoo", Decision.ATTACH),
        ("/srv/a/../b", Decision.SKIP),
        (None, Decision.SKIP),
    ],
)
def test_dirs_cover_a_folder_and_what_is_below_it_only(cwd: str | None, decision: Decision) -> None:
    filters = Filters(allowed_dirs=("/srv/a",), blocked_dirs=("/srv/a/tmp",))
    assert filters.evaluate(candidate(cwd=cwd), since_boot=0).decision == decision


def test_dirs_from_the_file_are_normalised(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "filters:\n  allowed_dirs: ['/srv/a/', '//srv/b/./c']\n"))
    assert config.filters.allowed_dirs == ("/srv/a", "/srv/b/c")
    assert config.evaluate(candidate(cwd="/srv/ab"), since_boot=0).decision == Decision.SKIP
    assert config.evaluate(candidate(cwd="/srv/b/c/d"), since_boot=0).decision == Decision.ATTACH


def test_skip_reasons_name_what_excluded_the_process() -> None:
    cases = [
        (Filters(blocked_uids=(0,)), candidate(uid=0), "uid 0 is in blocked_uids"),
        (Filters(allowed_uids=(5,)), candidate(uid=7), "uid 7 is not in allowed_uids"),
        (
            Filters(blocked_parents=("bash",)),
            candidate(parent_command="bash", ppid=77),
            "parent 'bash' (pid 77) is in blocked_parents",
        ),
        (
            Filters(allowed_parents=(1,)),
            candidate(parent_command="bash", ppid=77),
            "parent 'bash' (pid 77) is not in allowed_parents",
        ),
        (
            Filters(blocked_dirs=("/tmp",)),
            candidate(cwd="/tmp/x"),
            "working directory '/tmp/x' is within blocked_dirs entry '/tmp'",
        ),
        (
            Filters(allowed_users=("media",)),
            candidate(user=None, uid=None),
            "its user is unknown and allowed_users is set",
        ),
    ]
    for filters, process, reason in cases:
        verdict = filters.evaluate(process, since_boot=0)
        assert (verdict.decision, verdict.reason) == (Decision.SKIP, reason)


def test_parents_match_by_command_name_or_pid() -> None:
    by_name = Filters(allowed_parents=("supervisord",))
    by_pid = Filters(allowed_parents=(4000,))
    child = candidate(parent_command="supervisord", ppid=4000)
    other = candidate(parent_command="bash", ppid=4001)
    assert by_name.evaluate(child, 0).decision == by_pid.evaluate(child, 0).decision == "attach"
    assert by_name.evaluate(other, 0).decision == by_pid.evaluate(other, 0).decision == "skip"


def test_a_user_name_is_looked_up_from_the_uid_when_missing() -> None:
    # uid 0 is root on every Linux system.
    assert Filters(blocked_users=("root",)).evaluate(candidate(user=None, uid=0), 0).reason == (
        "user 'root' is in blocked_users"
    )


def test_runtime_defers_young_processes_and_skips_old_ones(spawn) -> None:
    process = spawn(["sleep", "30"])
    identity = current_identity(process.pid)
    assert identity is not None
    real = candidate(identity=identity)
    started = identity.started_since_boot
    filters = Filters(min_runtime_s=5, max_runtime_s=60)

    young = filters.evaluate(real, since_boot=started + 1)
    assert young.decision == Decision.DEFER
    assert young.retry_at == pytest.approx(started + 5)
    assert young.reason == "it has run for 1s, less than min_runtime 5s"
    assert filters.evaluate(real, since_boot=started + 5.5).decision == Decision.ATTACH
    old = filters.evaluate(real, since_boot=started + 61)
    assert (old.decision, old.reason) == (
        Decision.SKIP,
        "it has run for 1m1s, past max_runtime 1m",
    )


def test_filters_reject_bad_values_when_built_directly() -> None:
    with pytest.raises(ValueError, match=r"allowed_dirs\[0\] must be an absolute path, not 'x'"):
        Filters(allowed_dirs=("x",))
    with pytest.raises(ValueError, match="max_runtime must be longer than min_runtime"):
        Filters(min_runtime_s=10, max_runtime_s=5)
    with pytest.raises(ValueError, match="target_commands must name at least one command"):
        WatchConfig(target_commands=())


# --- precedence --------------------------------------------------------------------------


def test_defaults_then_file_then_flags(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """\
            scan_interval: 5s
            default_limits: {cpu_weight: 200, memory_limit: 512}
            commands:
              ffmpeg:
                limits: {cpu_weight: 400, cpu_quota: 150}
            retry: {max_attempts: 4}
            """,
        )
    )
    # The file wins over the defaults; what it leaves out stays default.
    assert config.scan_interval == 5.0
    assert config.discovery == defaults.DISCOVERY_MODE
    assert config.default_limits.cpu_quota == defaults.CPU_QUOTA_PERCENT

    # No flag given: nothing changes.
    assert apply_overrides(config) == config

    flagged = apply_overrides(
        config,
        scan_interval="2s",
        cpu_weight=50,
        discovery="events",
        max_retry_attempts=9,
        retry_enabled=False,
    )
    assert flagged.scan_interval == 2.0
    assert flagged.discovery == "events"
    assert (flagged.retry.policy.max_attempts, flagged.retry.enabled) == (9, False)
    # A limit flag wins everywhere, per-command limits included; the others stay as filed.
    assert flagged.default_limits == Limits(cpu_weight=50, memory_limit_mb=512)
    assert flagged.limits_for("ffmpeg") == Limits(cpu_quota=150, cpu_weight=50, memory_limit_mb=512)
    assert flagged.source == config.source


def test_target_flag_is_the_complete_list(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "commands:\n  ffprobe:\n    limits: {cpu_weight: 5}\n"))
    assert "ffprobe" in config.target_commands
    flagged = apply_overrides(config, target_commands=["ffmpeg"])
    assert [r.name for r in flagged.rules()] == ["ffmpeg"]
    assert flagged.limits_for("ffprobe").cpu_weight == 5
    assert apply_overrides(config, target_commands=()) == config  # click's "not given"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"cpu_weight": 0}, "--cpu-weight must be between 1 and 10000, not 0"),
        ({"memory_limit": -5}, "--memory-limit must be at least 1 MB, not -5"),
        ({"cpu_quota": -1}, "--cpu-quota must be a positive percentage of one core, not -1"),
        ({"scan_interval": "-1s"}, "--scan-interval must be a positive duration, not '-1s'"),
        ({"max_retry_attempts": 0}, "--max-retry-attempts must be at least 1, not 0"),
        ({"discovery": "x"}, "--discovery must be one of events, poll, auto, not 'x'"),
        (
            {"target_commands": ["a/b"]},
            "--target must be a command name (the basename of argv[0], without '/'), not 'a/b'",
        ),
    ],
)
def test_bad_flag_values_name_the_flag(flags: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        apply_overrides(WatchConfig(), **flags)
    assert str(caught.value) == message


# --- printing and the CLI ------------------------------------------------------------------


def test_the_example_file_passes_config_check() -> None:
    result = CliRunner().invoke(cli, ["config", "check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.output)
    config = load_config(EXAMPLE)
    assert printed == effective_dict(config)
    # The example is meant to show every key: nothing in the schema is missing from it.
    raw = yaml.safe_load(EXAMPLE.read_text())
    assert set(raw) == set(printed)
    for section in ("default_limits", "filters", "retry", "health", "cgroup"):
        assert set(raw[section]) == set(printed[section]), section
    assert config.limits_for("ffmpeg").cpu_quota == 200


def test_config_check_prints_the_one_sentence_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, "scan_interval: 5s\n\ndefault_limits:\n  cpu_weight: 20000\n")
    result = CliRunner().invoke(cli, ["config", "check", str(path)])
    assert result.exit_code == 2
    assert result.output == (
        f"Error: {path}, line 4: default_limits.cpu_weight must be between 1 and 10000, not 20000\n"
    )
    missing = CliRunner().invoke(cli, ["config", "check", str(tmp_path / "none.yaml")])
    assert missing.exit_code == 2
    assert (
        missing.output
        == f"Error: {tmp_path / 'none.yaml'} cannot be read: No such file or directory\n"
    )


def test_config_check_json_and_a_real_process(tmp_path: Path) -> None:
    path = write(tmp_path, "scan_interval: 2s\n")
    result = subprocess.run(
        [Path(sys.executable).parent / "ffrtmp", "config", "check", "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["scan_interval"] == "2s"


def test_the_printed_configuration_loads_back_to_the_same(tmp_path: Path) -> None:
    config = load_config(EXAMPLE)
    again = write(tmp_path, yaml.safe_dump(effective_dict(config)), "again.yaml")
    assert replace(load_config(again), source=None) == replace(config, source=None)


# --- properties --------------------------------------------------------------------------


duration_parts = st.tuples(
    st.integers(0, 48), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999)
).filter(any)


@HYPOTHESIS
@given(parts=duration_parts)
def test_any_written_duration_is_read_as_its_seconds(tmp_path: Path, parts: tuple) -> None:
    hours, minutes, seconds, millis = parts
    text = "".join(f"{n}{unit}" for n, unit in zip(parts, ("h", "m", "s", "ms"), strict=True) if n)
    config = load_config(write(tmp_path, f"scan_interval: {text}\nretention: {text}\n"))
    expected = hours * 3600 + minutes * 60 + seconds + millis / 1000
    assert config.scan_interval == pytest.approx(expected)
    assert config.retention_s == config.scan_interval


@HYPOTHESIS
@given(weight=st.integers(-(10**6), 10**6))
def test_cpu_weight_is_accepted_exactly_within_its_range(tmp_path: Path, weight: int) -> None:
    path = write(tmp_path, f"default_limits:\n  cpu_weight: {weight}\n")
    if 1 <= weight <= 10000:
        assert load_config(path).default_limits.cpu_weight == weight
    else:
        assert error_of(path) == (
            f"{path}, line 2: default_limits.cpu_weight must be between 1 and 10000, not {weight}"
        )


schema_words = {
    "scan_interval",
    "target_commands",
    "discovery",
    "default_limits",
    "filters",
    "commands",
    "retry",
    "health",
    "retention",
    "cgroup",
}


@HYPOTHESIS
@given(
    key=st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True).filter(
        lambda k: k not in schema_words and k not in ("y", "n", "yes", "no", "on", "off")
    ),
    blank_lines=st.integers(0, 5),
)
def test_any_unknown_key_is_rejected_at_its_line(
    tmp_path: Path, key: str, blank_lines: int
) -> None:
    path = write(tmp_path, "scan_interval: 5s\n" + "\n" * blank_lines + f"{key}: 1\n")
    assert error_of(path) == f"{path}, line {2 + blank_lines}: unknown key {key!r}"


names = st.from_regex(r"[a-z][a-z0-9._-]{0,10}", fullmatch=True).filter(
    lambda n: n not in ("y", "n", "yes", "no", "on", "off", "true", "false", "null")
)
durations = st.one_of(
    st.integers(1, 10**6).map(float), st.floats(0.001, 10**6, allow_nan=False).map(float)
)
limits = st.builds(
    Limits,
    cpu_quota=st.none() | st.floats(0.5, 6400),
    cpu_weight=st.integers(1, 10000),
    memory_limit_mb=st.none() | st.integers(1, 10**6),
)
filter_sets = st.builds(
    Filters,
    allowed_users=st.lists(names, max_size=3, unique=True).map(tuple),
    blocked_uids=st.lists(st.integers(0, 65535), max_size=3, unique=True).map(tuple),
    allowed_parents=st.lists(names | st.integers(1, 10**6), max_size=3, unique=True).map(tuple),
    min_runtime_s=st.sampled_from([0.0, 0.5, 30.0]),
    max_runtime_s=st.none() | st.sampled_from([60.0, 3600.5]),
    blocked_dirs=st.lists(names.map(lambda n: "/srv/" + n), max_size=2, unique=True).map(tuple),
)


@st.composite
def configs(draw: st.DrawFn) -> WatchConfig:
    base = draw(limits)
    commands = {
        name: CommandConfig(
            limits=draw(limits),
            filters=draw(st.none() | filter_sets),
            match=MatchCriteria(cmdline_regex=draw(st.none() | st.just(r"-f\s+flv"))),
        )
        for name in draw(st.lists(names, max_size=3, unique=True))
    }
    targets = tuple(draw(st.lists(names, min_size=1, max_size=3, unique=True)))
    targets += tuple(n for n in commands if n not in targets)
    return WatchConfig(
        scan_interval=draw(durations),
        target_commands=targets,
        default_limits=base,
        filters=draw(filter_sets),
        commands=commands,
        discovery=draw(st.sampled_from(["events", "poll", "auto"])),
        retention_s=draw(durations),
    )


@HYPOTHESIS
@given(config=configs())
def test_every_valid_configuration_survives_printing_and_loading(
    tmp_path: Path, config: WatchConfig
) -> None:
    path = write(tmp_path, yaml.safe_dump(effective_dict(config), sort_keys=False))
    assert replace(load_config(path), source=None) == config


def test_limits_read_in_words_for_the_log():
    from ffrtmp.limits import Limits

    assert Limits(50.0, 100, 256).describe() == "cpu 50%, weight 100, memory 256 MiB"
    assert Limits(None, 20, None).describe() == "cpu unlimited, weight 20, memory unlimited"
    assert Limits(150.5, 100, 1).describe() == "cpu 150.5%, weight 100, memory 1 MiB"
