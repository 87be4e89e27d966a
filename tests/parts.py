"""Parts of the suite that need something a machine may lack. Each part skips its tests with a
reason naming what would run it, and is remembered: the run ends with one line naming every part
that did not run (see pytest_terminal_summary in conftest.py), which `make test` repeats as its
last line together with the VM part's (.ci/v2vm.py, .ci/not_run.py).

The README's "Development" section lists the same parts and packages.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import NoReturn

import pytest

# Where `make test` collects the parts that did not run, one JSON object a line.
NOT_RUN_FILE_ENV = "FFRTMP_NOT_RUN"


@dataclass(frozen=True)
class Part:
    name: str  # what goes untested without it
    needs: str  # what would run it: Debian packages to install, or root


CGROUPS = Part("real cgroups", "root, with writable cgroup v1 cpu and memory hierarchies")
PROC_EVENTS = Part("kernel process events", "root")
AS_ROOT = Part("tests as root (mounts, files of other users)", "root")
FLEET = Part("the fleet on PostgreSQL", "root, apt-get install postgresql")
ALERT_RULES = Part("the alert rules with promtool", "apt-get install prometheus")
TOP_TERMINAL = Part("`ffrtmp top` in a terminal", "apt-get install tmux")
REAL_FFMPEG = Part("a real ffmpeg transcode", "apt-get install ffmpeg")
THREADS = Part("a process whose main thread ends first", "apt-get install gcc libc6-dev")
UNIT_VERIFY = Part("the unit by systemd-analyze verify", "apt-get install systemd")

_not_run: dict[Part, str] = {}


def skip(part: Part, why: str) -> NoReturn:
    """Skip the test: `part` cannot run here, for the reason `why`."""
    _not_run.setdefault(part, why)
    pytest.skip(f"{why} ({part.name}: needs {part.needs})")


def not_run() -> dict[Part, str]:
    """The parts that skipped in this run, with the first reason each gave."""
    return dict(_not_run)


def summary_line(parts: list[dict]) -> str:
    if not parts:
        return "every part of the suite ran"
    return "not run: " + "; ".join(f"{p['name']} (needs {p['needs']})" for p in parts)


def record(parts: list[dict]) -> None:
    """Adds the parts to the file `make test` collects them in, when it gave one."""
    path = os.environ.get(NOT_RUN_FILE_ENV)
    if not path or not parts:
        return
    try:
        with open(path, "a") as f:
            for part in parts:
                f.write(json.dumps(part) + "\n")
    except OSError as err:  # the run's own result stands; only the closing line lacks these
        print(f"cannot record the parts that did not run in {path}: {err}")
