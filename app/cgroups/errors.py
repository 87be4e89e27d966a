"""How a cgroup operation fails: an OSError that keeps the kernel's errno (the error classifier
keys on it) and the path involved, with one sentence saying what could not be done and why."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ffrtmp.identity import ProcessIdentity


class GovernorError(OSError):
    """A cgroup operation failed. `errno` is the kernel's; `filename` is the path involved;
    str() is one sentence saying what could not be done and why."""

    def __init__(self, code: int, message: str, path: os.PathLike | str | None = None) -> None:
        super().__init__(code, message, None if path is None else str(path))

    def __str__(self) -> str:
        return self.strerror


class TargetGone(GovernorError, ProcessLookupError):
    """The process exited, or its pid now belongs to another process."""

    def __init__(self, identity: ProcessIdentity, when: str) -> None:
        super().__init__(errno.ESRCH, f"{identity} is gone {when}", f"/proc/{identity.pid}")


def wrapped_error(err: OSError, doing: str, path: Path) -> GovernorError:
    """`err` as a GovernorError with the same errno and a sentence naming what failed."""
    if isinstance(err, GovernorError):
        return err
    code = err.errno if err.errno is not None else errno.EIO
    reason = os.strerror(code) if err.errno is not None else str(err)
    return GovernorError(code, f"could not {doing} {path}: {reason}", path)
