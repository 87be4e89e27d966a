"""Shell habits: a mistyped command gets the nearest names, completion scripts for the three
shells, and -q/-v on watch choosing its log level."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from daemon_harness import write_config

from ffrtmp.cli import main

FFRTMP = str(Path(sys.executable).parent / "ffrtmp")  # the console script: its name is the key


@pytest.mark.parametrize(
    ("args", "suggestion"),
    [
        (["retires"], "Error: No such command 'retires'. Did you mean 'retries'?"),
        (["proceses", "list"], "Error: No such command 'proceses'. Did you mean 'processes'?"),
        (["processes", "lsit"], "Error: No such command 'lsit'. Did you mean 'list'?"),
        (["evnets"], "Error: No such command 'evnets'. Did you mean 'events'?"),
        (["xyzzy"], "Error: No such command 'xyzzy'."),
    ],
)
def test_a_mistyped_command_gets_the_nearest_names(args, suggestion):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == suggestion


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "complete -o nosort -F _ffrtmp_completion ffrtmp"), ("zsh", "#compdef ffrtmp"),
     ("fish", "complete --no-files --command ffrtmp")],
)  # fmt: skip
def test_completion_scripts_for_bash_zsh_and_fish(shell, marker):
    """docs/cli.md tells how to install these; the lazily loaded commands complete too."""
    env = {**os.environ, "_FFRTMP_COMPLETE": f"{shell}_source"}
    done = subprocess.run([FFRTMP], env=env, capture_output=True, text=True, timeout=60)
    assert marker in done.stdout, done.stdout
    words = {**os.environ, "_FFRTMP_COMPLETE": "bash_complete", "COMP_WORDS": "ffrtmp ev"}
    words["COMP_CWORD"] = "1"
    done = subprocess.run([FFRTMP], env=words, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["plain,events"]


def watch_once(tmp_path, db_path, parent, *flags) -> str:
    config = write_config(tmp_path, tmp_path / "no-such-ffmpeg")  # matches nothing here
    done = subprocess.run(
        [sys.executable, "-m", "ffrtmp.cli", "watch", "--once", "--db", str(db_path)]
        + ["--watch-config", str(config), "--cgroup-parent", parent, *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_quiet_and_verbose_choose_the_log_level(tmp_path, db_path, real_cgroup_parent):
    record = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR) ", re.M)
    levels = {
        flag: set(record.findall(watch_once(tmp_path, db_path, real_cgroup_parent, *flag)))
        for flag in ((), ("-q",), ("--verbose",))
    }
    assert "INFO" in levels[()] and "DEBUG" not in levels[()]
    assert levels[("-q",)] <= {"WARNING", "ERROR"}
    assert {"DEBUG", "INFO"} <= levels[("--verbose",)]
    both = CliRunner().invoke(main, ["watch", "--once", "-q", "--log-level", "debug"])
    assert both.exit_code == 2
    assert both.output.splitlines()[-1] == "Error: choose one of --log-level and --quiet"
