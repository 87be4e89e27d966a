"""Reading and writing cgroupfs, and the formats of its interface files."""

from __future__ import annotations

import os
from pathlib import Path


class CgroupFiles:
    """The file operations the governor does on cgroupfs. The tests of cgroup v2 replace it
    with a fake tree, since no v2 controller can be enabled on the test machine."""

    def mkdir(self, path: Path) -> None:
        os.mkdir(path)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def read(self, path: Path) -> str:
        with open(path) as f:
            return f.read()

    def write(self, path: Path, text: str) -> None:
        # Without O_CREAT: a missing interface file is an error, never a new regular file.
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)


def parse_keyed(text: str | None) -> dict[str, int]:
    """Parse `key value` lines (cpu.stat, memory.events, memory.oom_control)."""
    values = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            values[key] = int(value)
        except ValueError:
            continue
    return values


def int_or_none(text: str | None) -> int | None:
    return None if text is None else int(text.strip())
