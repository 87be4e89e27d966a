"""Real processes for tests: started here, ended by their pid, always reaped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

SLEEP_BINARY = shutil.which("sleep") or "/bin/sleep"
# The command name of the suite's own transcoders. Never a production target (ffmpeg,
# gst-launch-1.0): an `ffrtmp watch` running on the machine would govern the suite's processes,
# and a test's daemon could take the machine's.
TEST_TARGET = "ffrtmp-test-transcoder"
# The bound on a wait for a state that is sure to come: generous, since the VM's CPU is emulated
# and the host's may be busy. A passing test never waits it out; a failing one says what it
# waited for.
STATE_TIMEOUT_S = 180.0


def make_transcoder(directory: Path, name: str = TEST_TARGET) -> Path:
    """A copy of `sleep` named TEST_TARGET (or `name`, for a test of a production target's
    name): it just sleeps."""
    path = directory / name
    shutil.copy2(SLEEP_BINARY, path)
    path.chmod(0o755)
    return path


class ProcessSpawner:
    """Starts processes and, on close(), kills and reaps each one it started (by pid)."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []
        self.extra_pids: list[int] = []  # grandchildren a test learned of; killed, not reaped

    def spawn(self, argv: list, wait_exec: bool = True, **popen_kwargs) -> subprocess.Popen:
        """Start argv; by default return once its own command line is visible in /proc."""
        popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
        popen_kwargs.setdefault("stdout", subprocess.DEVNULL)
        process = subprocess.Popen([str(a) for a in argv], **popen_kwargs)
        self.processes.append(process)
        if wait_exec:
            wait_for_exec(process.pid)
        return process

    def __call__(self, argv: list, wait_exec: bool = True, **popen_kwargs) -> subprocess.Popen:
        """The suite's `spawn` fixture: like spawn(), quiet on stderr unless told."""
        popen_kwargs.setdefault("stderr", subprocess.DEVNULL)
        return self.spawn(argv, wait_exec, **popen_kwargs)

    def close(self) -> None:
        for pid in self.extra_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for process in self.processes:
            if process.returncode is not None:
                continue  # already reaped: its pid may belong to someone else by now
            try:
                os.kill(process.pid, signal.SIGKILL)  # also fine on a not yet reaped zombie
            except ProcessLookupError:
                pass
        for process in self.processes:
            process.wait(timeout=10)
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


def wait_until(
    condition: Callable[[], object], timeout: float = STATE_TIMEOUT_S, what: str = ""
) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.01)


def read_cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def wait_for_exec(pid: int, timeout: float = STATE_TIMEOUT_S) -> None:
    """Wait until the new program's arguments are visible in /proc.

    Popen returns as soon as the kernel closes the child's close-on-exec descriptors, which is
    before the new command line is in place: for a moment /proc/<pid>/cmdline still shows the
    parent's arguments, then nothing.
    """
    ours = read_cmdline(os.getpid())
    wait_until(
        lambda: read_cmdline(pid) not in (b"", ours) or not os.path.exists(f"/proc/{pid}"),
        timeout,
        f"pid {pid} to exec",
    )
