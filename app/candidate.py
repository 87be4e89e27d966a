"""A process that matched a target command, with what the rules and the records need of it."""

from __future__ import annotations

from dataclasses import dataclass

from ffrtmp.identity import ProcessIdentity
from ffrtmp.process_text import safe_optional, safe_text


@dataclass(frozen=True, slots=True)
class Candidate:
    identity: ProcessIdentity
    command: str  # the name the rule matched on: basename(argv[0]) by default
    argv: tuple[str, ...]
    ppid: int
    rule: str  # name of the rule that matched (the target command by default)
    uid: int | None = None
    user: str | None = None
    exe: str | None = None
    cwd: str | None = None
    parent_command: str | None = None  # basename(argv[0]) of the parent, for parent filters

    def __post_init__(self) -> None:
        # Whatever bytes the process holds, a Candidate holds text that can be stored and
        # shown (ffrtmp.process_text); the rules matched on the raw text before this.
        set_ = object.__setattr__
        set_(self, "command", safe_text(self.command))
        set_(self, "argv", tuple(safe_text(arg) for arg in self.argv))
        for name in ("user", "exe", "cwd", "parent_command"):
            set_(self, name, safe_optional(getattr(self, name)))

    @property
    def pid(self) -> int:
        return self.identity.pid
