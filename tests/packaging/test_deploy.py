"""deploy/ffrtmp-watch.service: systemd accepts it, and the settings the daemon needs are set."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import parts
import pytest

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "ffrtmp-watch.service"
INSTALLED_BINARY = "/usr/local/bin/ffrtmp"
# Every key must be known to systemd 252 (Debian 12): a key it does not know is ignored there with
# a warning, so a setting the unit relies on would silently be missing. Not even a newer key.


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """{section: {key: [values in order]}}: systemd keys may repeat, so configparser won't do."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}:{number}: not a key=value line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return read_unit(UNIT)


def one(unit: dict, key: str, section: str = "Service") -> str:
    values = unit[section].get(key)
    assert values is not None, f"{key}= missing from [{section}]"
    assert len(values) == 1, f"{key}= given {len(values)} times"
    return values[0]


def test_service_type_and_command(unit):
    assert one(unit, "Type") == "notify"
    argv = one(unit, "ExecStart").split()
    assert argv[:2] == [INSTALLED_BINARY, "watch"]
    assert argv[argv.index("--watch-config") + 1] == "/etc/ffrtmp/watch.yaml"
    assert argv[argv.index("--http") + 1] == "127.0.0.1:9464"
    assert one(unit, "ExecReload") == "/bin/kill -HUP $MAINPID"


def test_cgroup_delegation_and_workloads_survive_a_restart(unit):
    assert one(unit, "Delegate") == "yes"
    assert one(unit, "KillMode") == "process"
    assert one(unit, "Restart") == "on-failure"


def test_watchdog_and_state(unit):
    assert re.fullmatch(r"\d+s?", one(unit, "WatchdogSec"))
    assert one(unit, "StateDirectory") == "ffrtmp"
    assert one(unit, "Environment") == "FFRTMP_DB=/var/lib/ffrtmp/ffrtmp.db"


def test_hardening_leaves_proc_cgroups_and_netlink(unit):
    service = unit["Service"]
    assert "AF_NETLINK" in one(unit, "RestrictAddressFamilies").split()
    assert one(unit, "ProtectSystem") == "strict"
    assert "/sys/fs/cgroup" in " ".join(service["ReadWritePaths"]).split()
    assert one(unit, "NoNewPrivileges") == "yes"
    # Each of these would hide other processes' /proc or make /sys/fs/cgroup read-only.
    assert service.get("ProtectProc", ["default"]) == ["default"]
    assert "ProcSubset" not in service
    assert "ProtectControlGroups" not in service
    assert "ProtectKernelTunables" not in service
    assert "User" not in service  # root: other users' processes are moved into cgroups


def test_installs_into_multi_user(unit):
    assert one(unit, "WantedBy", section="Install") == "multi-user.target"


def test_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        parts.skip(parts.UNIT_VERIFY, "systemd-analyze not found")
    # verify checks that ExecStart exists; the installed path does not here, so the copy points
    # at this checkout's entry point, which takes the same arguments.
    entry_point = Path(sys.executable).with_name("ffrtmp")
    if not entry_point.exists():
        pytest.skip(f"no ffrtmp entry point next to {sys.executable}")
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(INSTALLED_BINARY, str(entry_point)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.findall(r"Unknown key '?([A-Za-z]+)'? in section", output) == [], output
    problems = [line for line in output.splitlines() if UNIT.name in line]
    assert problems == [], output
