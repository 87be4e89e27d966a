"""Candidates (processes a rule matched) for tests that record processes through the Store."""

from __future__ import annotations

from ffrtmp.candidate import Candidate
from ffrtmp.identity import ProcessIdentity, boot_id


def make_candidate(
    pid: int = 4242,
    start_ticks: int = 1,
    *,
    identity: ProcessIdentity | None = None,
    command: str = "ffmpeg",
    argv: tuple[str, ...] | None = None,
    ppid: int = 1,
    rule: str | None = None,
    **fields,
) -> Candidate:
    """A candidate for `pid` started at `start_ticks` on this boot (a process that is not
    running, unless `identity` is a live one's): `command` run as `command -i in`, matched by
    the rule of the same name unless told."""
    return Candidate(
        identity=identity or ProcessIdentity(boot_id(), pid, start_ticks),
        command=command,
        argv=argv if argv is not None else (command, "-i", "in"),
        ppid=ppid,
        rule=rule if rule is not None else command,
        **fields,
    )
