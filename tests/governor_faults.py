"""Moments of a real attach that cannot be hit on purpose, made to happen on the real kernel."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from helpers_processes import wait_until

from ffrtmp.cgroups import CgroupFiles
from ffrtmp.identity import ProcessIdentity


class ExitsAsItIsMoved(CgroupFiles):
    """Kills the process just before its pid is written to cgroup.procs and waits until it is a
    zombie: the moment between the governor's check that it runs and its move."""

    def __init__(self, identity: ProcessIdentity, timeout: float = 10.0) -> None:
        self.identity = identity
        self.timeout = timeout

    def write(self, path: Path, text: str) -> None:
        if path.name == "cgroup.procs" and text == str(self.identity.pid):
            os.kill(self.identity.pid, signal.SIGKILL)
            wait_until(lambda: not self.identity.is_running(), self.timeout, "the process to exit")
        super().write(path, text)
