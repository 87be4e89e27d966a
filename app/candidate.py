"""A process that matched a target command, with what the rules and the records need of it."""

from __future__ import annotations

from dataclasses import dataclass

from ffrtmp.identity import ProcessIdentity


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

    @property
    def pid(self) -> int:
        return self.identity.pid
