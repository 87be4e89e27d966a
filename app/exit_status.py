"""How a process ended: an exit code or a killing signal, or why neither is known.

The kernel keeps a raw wait status (`code << 8` for an exit, the signal number in the low
seven bits for a kill, 0x80 when a core was dumped). The process-events connector reports it
in its exit event, and /proc/<pid>/stat shows it as field 52 while the process is a zombie.
The old system wrote -1 when it did not know; here an unknown result is None with a reason.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

from ffrtmp.identity import read_stat

_MAX_SIGNAL = signal.SIGRTMAX


def decode_wait_status(status: int) -> tuple[int | None, int | None]:
    """(exit_code, None) for a normal exit, (None, signal_number) for a kill by a signal."""
    if not 0 <= status <= 0xFFFF:
        raise ValueError(f"wait status must be between 0 and 0xffff, not {status}")
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    raise ValueError(f"wait status {status:#x} is a stop or continue, not an exit")


def zombie_exit_status(pid: int, start_ticks: int) -> tuple[int | None, int | None] | None:
    """The decoded exit status of a zombie that its parent has not reaped yet.

    None when the pid is gone, is not a zombie, or now belongs to another process (the start
    ticks differ). The kernel shows field 52 only to a reader allowed to ptrace the process
    (it prints 0 otherwise), so the answer is trustworthy only when the daemon runs as root.
    """
    stat = read_stat(pid)
    if stat is None or stat.start_ticks != start_ticks or stat.state != "Z":
        return None
    return decode_wait_status(stat.exit_code)


@dataclass(frozen=True, slots=True)
class ExitInfo:
    """The end of a process as recorded: exactly one of code and signal, or a reason for neither."""

    exit_code: int | None
    exit_signal: int | None
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.exit_code is not None and self.exit_signal is not None:
            raise ValueError("a process exits with a code or is killed by a signal, not both")
        if self.exit_code is not None and not 0 <= self.exit_code <= 255:
            raise ValueError(f"exit code must be between 0 and 255, not {self.exit_code}")
        if self.exit_signal is not None and not 1 <= self.exit_signal <= _MAX_SIGNAL:
            raise ValueError(
                f"exit signal must be between 1 and {int(_MAX_SIGNAL)}, not {self.exit_signal}"
            )
        known = self.exit_code is not None or self.exit_signal is not None
        if known and self.reason is not None:
            raise ValueError("a reason is given only when the exit code and signal are unknown")
        if not known and not self.reason:
            raise ValueError("an unknown exit code and signal needs a reason")

    @classmethod
    def from_wait_status(cls, status: int) -> ExitInfo:
        code, signo = decode_wait_status(status)
        return cls(code, signo)

    @classmethod
    def unknown(cls, reason: str) -> ExitInfo:
        return cls(None, None, reason)

    @property
    def known(self) -> bool:
        return self.reason is None

    def describe(self, oom_killed: bool | None = None) -> str:
        """For a log line: `exit code 0`, `killed by SIGKILL`, `OOM-killed`, or the reason."""
        if oom_killed:
            return "OOM-killed"
        if self.exit_code is not None:
            return f"exit code {self.exit_code}"
        if self.exit_signal is not None:
            import signal

            try:
                name = signal.Signals(self.exit_signal).name
            except ValueError:
                name = f"signal {self.exit_signal}"
            return f"killed by {name}"
        return f"exit unknown ({self.reason})"
