"""Text that comes from a process (argv, cwd, exe, user names), made safe to store and show.

Linux hands these over as bytes that need not be UTF-8; Python decodes them with
surrogateescape, and such a str cannot be written to SQLite or to a terminal. Every byte that
is not part of valid UTF-8 becomes the four characters `\\xNN` (its hex value), the way
Python's `backslashreplace` writes it; valid UTF-8, control characters included, is kept as it
is (escaping for a terminal is the job of the human output). One representation everywhere:
processes.argv, cwd, exe and user hold it, and `ffrtmp processes show` prints it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass


def safe_text(value: str) -> str:
    """`value` with every byte that is not valid UTF-8 written as `\\xNN`."""
    if value.isascii():
        return value  # the common case costs one scan of the string
    try:
        raw = os.fsencode(value)
    except UnicodeEncodeError:  # a lone surrogate that no byte decoded to
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def safe_optional(value: str | None) -> str | None:
    return None if value is None else safe_text(value)


# What is kept of one command line: any user can start a process with megabytes of arguments,
# and each would otherwise be a row of that size (issue 14: 20 such processes, 58 MB).
ARGV_STORED_BYTES = 8192


@dataclass(frozen=True, slots=True)
class StoredArgv:
    argv: list[str]  # the arguments that fit in ARGV_STORED_BYTES, the last one cut short
    total_bytes: int  # the whole command line: each argument's UTF-8 and a NUL after it
    sha256: str  # of those same bytes, the whole line

    @property
    def truncated(self) -> bool:
        return sum(len(a.encode()) + 1 for a in self.argv) < self.total_bytes


def stored_argv(argv: Sequence[str], limit: int = ARGV_STORED_BYTES) -> StoredArgv:
    """What is stored of `argv` (safe text already): at most `limit` bytes of it, with the
    length and hash of all of it."""
    digest = hashlib.sha256()
    kept: list[str] = []
    total = 0
    for arg in argv:
        raw = arg.encode("utf-8") + b"\0"
        digest.update(raw)
        room = limit - total
        if room > 0:
            # Cut at a character boundary: the text stays valid UTF-8.
            kept.append(arg if len(raw) <= room else raw[: room - 1].decode("utf-8", "ignore"))
        total += len(raw)
    return StoredArgv(kept, total, digest.hexdigest())
