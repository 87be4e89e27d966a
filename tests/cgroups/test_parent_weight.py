"""The parent cgroup's CPU weight (`cgroup.parent_cpu_weight`): what the configuration says is
what the kernel holds, on a parent ffrtmp made, and nowhere else.

Real `ffrtmp watch --once` processes on the real hierarchy (v1 here, v2 in the VM of
`make test-v2`), with a rule that matches no process at all: the daemon prepares its parent
cgroup at start-up, which is all these tests look at.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cgroup_hierarchy import CgroupHierarchy
from click.testing import CliRunner
from daemon_harness import write_config
from helpers_processes import SLEEP_BINARY

from ffrtmp.cgroups.parent_weight import PARENT_MARK, is_marked
from ffrtmp.cli import main

WATCH_TIMEOUT_S = 600  # the VM's CPU is emulated: a Python start takes seconds there


def watch_once(tmp_path: Path, parent: str, extra: str = "", *flags: str) -> None:
    """One `ffrtmp watch --once` whose only rule matches no process on the machine."""
    config = write_config(
        tmp_path, tmp_path / "no-such-transcoder", extra, command="ffrtmp-weight-none"
    )
    done = subprocess.run(
        [sys.executable, "-m", "ffrtmp.cli", "watch", "--once", "--db", str(tmp_path / "w.db")]
        + ["--watch-config", str(config), "--cgroup-parent", parent, *flags],
        capture_output=True,
        text=True,
        timeout=WATCH_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr


def weight_file(hierarchy: CgroupHierarchy, parent: str) -> Path:
    base = hierarchy.by_controller["cpu"].directory / parent
    return base / ("cpu.shares" if hierarchy.version == 1 else "cpu.weight")


def held_weight(hierarchy: CgroupHierarchy, parent: str) -> int:
    """The parent's weight as the kernel holds it, in the file's own unit."""
    return int(weight_file(hierarchy, parent).read_text())


def expected(hierarchy: CgroupHierarchy, weight: int) -> int:
    """A (v2) weight in the unit of this hierarchy's file: v1 shares are weight x 10.24."""
    return round(weight * 1024 / 100) if hierarchy.version == 1 else weight


@pytest.mark.vm
def test_the_parent_ffrtmp_makes_gets_the_configured_weight(
    tmp_path, cgroup_hierarchy: CgroupHierarchy, real_cgroup_parent: str
):
    watch_once(tmp_path, real_cgroup_parent, "cgroup: {parent_cpu_weight: 700}\n")

    assert held_weight(cgroup_hierarchy, real_cgroup_parent) == expected(cgroup_hierarchy, 700)
    for directory in cgroup_hierarchy.directories(real_cgroup_parent):
        assert is_marked(directory), f"{directory} lacks {PARENT_MARK}"


def test_the_default_weight_is_ten_threads_worth_and_the_flag_overrides_the_file(
    tmp_path, cgroup_hierarchy: CgroupHierarchy, real_cgroup_parent: str
):
    watch_once(tmp_path, real_cgroup_parent)
    assert held_weight(cgroup_hierarchy, real_cgroup_parent) == expected(cgroup_hierarchy, 1000)

    watch_once(
        tmp_path,
        real_cgroup_parent,
        "cgroup: {parent_cpu_weight: 700}\n",
        "--cgroup-parent-cpu-weight",
        "250",
    )
    assert held_weight(cgroup_hierarchy, real_cgroup_parent) == expected(cgroup_hierarchy, 250)


def test_a_parent_made_by_an_earlier_start_takes_a_changed_weight(
    tmp_path, cgroup_hierarchy: CgroupHierarchy, real_cgroup_parent: str
):
    watch_once(tmp_path, real_cgroup_parent, "cgroup: {parent_cpu_weight: 700}\n")
    watch_once(tmp_path, real_cgroup_parent, "cgroup: {parent_cpu_weight: 3000}\n")

    assert held_weight(cgroup_hierarchy, real_cgroup_parent) == expected(cgroup_hierarchy, 3000)


def test_a_parent_someone_else_made_keeps_its_weight(
    tmp_path, cgroup_hierarchy: CgroupHierarchy, real_cgroup_parent: str
):
    if cgroup_hierarchy.version != 1:
        pytest.skip("made by hand on v1 only: v2 needs controllers enabled above it first")
    for directory in cgroup_hierarchy.directories(real_cgroup_parent):
        directory.mkdir()
    theirs = weight_file(cgroup_hierarchy, real_cgroup_parent)
    theirs.write_text("512")

    watch_once(tmp_path, real_cgroup_parent, "cgroup: {parent_cpu_weight: 700}\n")

    assert held_weight(cgroup_hierarchy, real_cgroup_parent) == 512
    assert not is_marked(theirs.parent)


def test_run_gives_a_parent_it_makes_the_default_and_keeps_an_existing_one(
    tmp_path, cgroup_hierarchy: CgroupHierarchy, real_cgroup_parent: str
):
    def run_once(db: Path) -> None:
        result = CliRunner().invoke(
            main,
            ["run", "--db", str(db), "--cgroup-parent", real_cgroup_parent, "--"]
            + [SLEEP_BINARY, "0"],
        )
        assert result.exit_code == 0, result.output

    run_once(tmp_path / "r1.db")
    assert held_weight(cgroup_hierarchy, real_cgroup_parent) == expected(cgroup_hierarchy, 1000)

    # The daemon's own setting is never undone by `run` beside it.
    watch_once(tmp_path, real_cgroup_parent, "cgroup: {parent_cpu_weight: 4000}\n")
    run_once(tmp_path / "r2.db")
    assert held_weight(cgroup_hierarchy, real_cgroup_parent) == expected(cgroup_hierarchy, 4000)


def test_config_check_shows_the_parent_weight_and_refuses_one_out_of_range(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("cgroup: {parent_cpu_weight: 2500}\n")
    shown = CliRunner().invoke(main, ["config", "check", str(good), "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["cgroup"]["parent_cpu_weight"] == 2500

    bad = tmp_path / "bad.yaml"
    bad.write_text("cgroup:\n  parent_cpu_weight: 0\n")
    refused = CliRunner().invoke(main, ["config", "check", str(bad)])
    assert refused.exit_code == 2
    assert refused.output.strip() == (
        f"Error: {bad}, line 2: cgroup.parent_cpu_weight must be between 1 and 10000, not 0"
    )
