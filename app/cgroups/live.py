"""What a job cgroup has used so far, read from its directories while its process runs.

Shared by the daemon's sampler (`ffrtmp.usage`) and `ffrtmp top`, which knows a job only by the
directories its row records: so it is a function of the directories, not of a governor.
Reading is a handful of small files per job; which directory holds which file is found once
(`LiveUsageFiles.find`) and kept, so a sample costs only the reads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ffrtmp.cgroups.files import parse_keyed


@dataclass(frozen=True, slots=True)
class LiveUsage:
    """The counters of one job cgroup at one moment; None where the kernel has no such file."""

    cpu_seconds: float | None
    memory_current_bytes: int | None
    peak_memory_bytes: int | None
    cpu_periods: int | None
    cpu_throttled_periods: int | None
    cpu_throttled_seconds: float | None


# The counter files of each version; cpu.stat is in both, with other keys.
_V1_FILES = ("cpuacct.usage", "cpu.stat", "memory.usage_in_bytes", "memory.max_usage_in_bytes")
_V2_FILES = ("cpu.stat", "memory.current", "memory.peak")


@dataclass(frozen=True, slots=True)
class LiveUsageFiles:
    """Where each counter file of one job cgroup is (None: this kernel has none)."""

    version: int
    paths: dict[str, str | None]

    @classmethod
    def find(cls, version: int, directories: Iterable[str | Path]) -> LiveUsageFiles:
        """On v1 each controller has its own hierarchy (cpu and cpuacct often share one), so
        each file is looked for in every directory of the job."""
        if version not in (1, 2):
            raise ValueError(f"cgroup version must be 1 or 2, not {version!r}")
        directories = [str(d) for d in directories]
        paths: dict[str, str | None] = {}
        for name in _V1_FILES if version == 1 else _V2_FILES:
            found = (os.path.join(d, name) for d in directories)
            paths[name] = next((p for p in found if os.path.isfile(p)), None)
        return cls(version, paths)

    @property
    def exists(self) -> bool:
        """False when none of the job's directories holds a counter (the cgroup is gone)."""
        return any(p is not None for p in self.paths.values())

    def read(self) -> LiveUsage:
        """The counters now. Raises FileNotFoundError when the cgroup was removed meanwhile."""
        text = {name: _read(path) for name, path in self.paths.items()}
        stat = parse_keyed(text["cpu.stat"])
        if self.version == 1:
            usage_ns = _number(text["cpuacct.usage"])
            throttled_ns = stat.get("throttled_time")
            return LiveUsage(
                cpu_seconds=None if usage_ns is None else usage_ns / 1e9,
                memory_current_bytes=_number(text["memory.usage_in_bytes"]),
                peak_memory_bytes=_number(text["memory.max_usage_in_bytes"]),
                cpu_periods=stat.get("nr_periods"),
                cpu_throttled_periods=stat.get("nr_throttled"),
                cpu_throttled_seconds=None if throttled_ns is None else throttled_ns / 1e9,
            )
        usage_us, throttled_us = stat.get("usage_usec"), stat.get("throttled_usec")
        return LiveUsage(
            cpu_seconds=None if usage_us is None else usage_us / 1e6,
            memory_current_bytes=_number(text["memory.current"]),
            peak_memory_bytes=_number(text["memory.peak"]),
            cpu_periods=stat.get("nr_periods"),
            cpu_throttled_periods=stat.get("nr_throttled"),
            cpu_throttled_seconds=None if throttled_us is None else throttled_us / 1e6,
        )


def read_live_usage(version: int, directories: Iterable[str | Path]) -> LiveUsage | None:
    """The counters of the job cgroup in `directories` now; None when it no longer exists."""
    files = LiveUsageFiles.find(version, directories)
    if not files.exists:
        return None
    try:
        return files.read()
    except FileNotFoundError:
        return None


def _read(path: str | None) -> str | None:
    if path is None:
        return None
    with open(path, "rb", buffering=0) as f:
        return f.read(4096).decode("ascii", "replace")


def _number(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None
