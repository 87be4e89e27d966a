"""Which processes are targets: rules over argv[0], the executable path or the command line."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class MatchRule:
    """A process matches when every criterion given here holds.

    command: basename(argv[0]) equals this (the original's only criterion).
    exe: the resolved executable path (/proc/<pid>/exe) equals this.
    cmdline_regex: re.search over the command line joined by single spaces.
    """

    name: str
    command: str | None = None
    exe: str | None = None
    cmdline_regex: str | None = None
    _compiled: re.Pattern | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a match rule needs a name")
        if self.command is None and self.exe is None and self.cmdline_regex is None:
            raise ValueError(f"match rule {self.name!r} has no criterion")
        if self.cmdline_regex is not None:
            try:
                object.__setattr__(self, "_compiled", re.compile(self.cmdline_regex))
            except re.error as exc:
                raise ValueError(
                    f"match rule {self.name!r}: cmdline_regex is not a regular expression: {exc}"
                ) from None

    @property
    def needs_exe(self) -> bool:
        return self.exe is not None

    def matches(self, argv: tuple[str, ...] | list[str], exe: str | None = None) -> bool:
        if not argv:
            return False
        if self.command is not None and os.path.basename(argv[0]) != self.command:
            return False
        if self.exe is not None and exe != self.exe:
            return False
        return not (self._compiled is not None and not self._compiled.search(" ".join(argv)))


def rules_for_commands(commands: tuple[str, ...] | list[str]) -> list[MatchRule]:
    """The default rule set: one rule per target command, named after it."""
    return [MatchRule(name=c, command=c) for c in commands]
