"""One pass over /proc that finds the processes the match rules want, reading as little as it can.

The hot path reads one file per process: the first page of /proc/<pid>/cmdline. When every
rule names a command, argv[0]'s basename is compared as bytes and nothing is decoded for the
thousands of processes that are not targets. Only a match costs more: its /proc/<pid>
directory is opened once and everything else (stat, the whole command line again, status, exe,
cwd) is read through that directory descriptor. A descriptor of /proc/<pid> stays bound to the
process it was opened for; if the pid is recycled meanwhile the reads fail instead of
describing the newcomer, so a Candidate's identity and its argv always come from one process.

Nothing is cached between scans except user names: a shell that execs into ffmpeg keeps its pid
and start time, and must be found on the first scan after the exec.
"""

from __future__ import annotations

import logging
import os
import pwd
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ffrtmp import failpoints
from ffrtmp.candidate import Candidate
from ffrtmp.identity import ProcessIdentity, StatFields, boot_id, parse_stat
from ffrtmp.matching import MatchRule

logger = logging.getLogger(__name__)

MANUAL_RULE = "manual"  # Candidate.rule of a process picked by pid (`ffrtmp attach --pid`)

# One page holds the command line of nearly every process; longer ones are read in full only
# when they match.
_FIRST_READ_BYTES = 4096
_FULL_READ_BYTES = 1 << 16
# A ppid chain longer than this is a corrupt or fake tree, not a real process ancestry.
_MAX_ANCESTRY_DEPTH = 4096


class _Vanished(Exception):
    """The process exited, or could not be read, while it was being looked at."""


@dataclass(frozen=True, slots=True)
class ScanResult:
    seen: int  # processes listed in /proc and looked at
    matched: list[Candidate]
    unreadable: int  # vanished or access denied mid-scan: skipped this time, counted here
    duration_s: float


class Scanner:
    """Finds processes that match `rules` in the process table under `proc_root`.

    self_pid: the daemon's own pid. That process and all its descendants are never returned.
    None means nothing is skipped on that ground; the daemon passes os.getpid().
    """

    def __init__(
        self,
        rules: Sequence[MatchRule],
        proc_root: str = "/proc",
        self_pid: int | None = None,
    ) -> None:
        self.rules = tuple(rules)
        self.proc_root = proc_root.rstrip("/") or "/"
        self.self_pid = self_pid
        # The byte pre-filter is exact only when every rule requires a command name; one rule
        # without a command (exe or regex only) means every command line must be decoded.
        if all(rule.command is not None for rule in self.rules):
            self._command_filter: frozenset[bytes] | None = frozenset(
                os.fsencode(rule.command) for rule in self.rules
            )
        else:
            self._command_filter = None
        self._needs_exe = any(rule.needs_exe for rule in self.rules)
        self._user_names: dict[int, str | None] = {}

    # -- public ------------------------------------------------------------------------------

    def scan(self) -> ScanResult:
        """One full pass over the process table. Only listing /proc itself can raise."""
        failpoints.check("scanner.scan")
        started = time.monotonic()
        names = os.listdir(self.proc_root)
        root = self.proc_root
        self_pid = self.self_pid
        ppids: dict[int, int] = {}  # ancestry looked up during this scan only
        matched: list[Candidate] = []
        seen = 0
        unreadable = 0
        for name in names:
            if not name.isdigit():
                continue
            seen += 1
            raw = _first_page_of_cmdline(f"{root}/{name}")
            if raw is None:
                unreadable += 1
                continue
            if not self._may_match(raw, f"{root}/{name}"):
                continue
            pid = int(name)
            if pid == self_pid:
                continue
            try:
                candidate = self._examine(pid, require_match=True, ppids=ppids)
            except _Vanished:
                unreadable += 1
                continue
            if candidate is not None:
                matched.append(candidate)
        duration = time.monotonic() - started
        logger.debug(
            "scanned %s processes in %.1f ms: %s matched, %s unreadable",
            seen,
            duration * 1000,
            len(matched),
            unreadable,
        )
        return ScanResult(seen=seen, matched=matched, unreadable=unreadable, duration_s=duration)

    def inspect(self, pid: int, require_match: bool = True) -> Candidate | None:
        """Look at one pid with the same rules and skips as a scan.

        None when the process is absent, unreadable, a zombie, a kernel thread, the daemon or
        one of its descendants, or (with require_match) matches no rule. With
        require_match=False any other process gives a Candidate whose rule is "manual".
        """
        if pid <= 0 or pid == self.self_pid:
            return None
        if require_match:
            # Called for every exec on the machine: the scan's cheap look at the command
            # line first, the full read only for what may match.
            path = f"{self.proc_root}/{pid}"
            raw = _first_page_of_cmdline(path)
            if raw is None or not self._may_match(raw, path):
                return None
        try:
            return self._examine(pid, require_match=require_match, ppids={})
        except _Vanished:
            return None

    def _may_match(self, raw: bytes, path: str) -> bool:
        """Whether the first bytes of a command line can belong to a match: False rules a
        process out for sure; True sends it to the full look in _examine."""
        if not raw:
            return False  # a kernel thread, or a zombie whose memory is already gone
        truncated = len(raw) == _FIRST_READ_BYTES  # judged in full by _examine
        if self._command_filter is not None:
            end = raw.find(b"\0")
            argv0 = raw if end < 0 else raw[:end]
            return argv0[argv0.rfind(b"/") + 1 :] in self._command_filter or (truncated and end < 0)
        if truncated:
            return True
        exe = _readlink_path(f"{path}/exe") if self._needs_exe else None
        return self._first_match(_split_argv(raw), exe) is not None

    # -- one process -------------------------------------------------------------------------

    def _examine(self, pid: int, require_match: bool, ppids: dict[int, int]) -> Candidate | None:
        """Everything about one process, read through one descriptor of its /proc directory."""
        try:
            dir_fd = os.open(f"{self.proc_root}/{pid}", os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise _Vanished(pid) from exc
        try:
            stat = _read_stat_at(dir_fd)
            if stat.state in ("Z", "X"):
                return None
            raw = _read_all_at(dir_fd, "cmdline")
            if not raw:
                return None
            argv = _split_argv(raw)
            exe = _readlink_at(dir_fd, "exe") if self._needs_exe else None
            rule = self._first_match(argv, exe)
            if rule is None:
                if require_match:
                    return None
                rule = MANUAL_RULE
            if self._descends_from_self(stat.ppid, ppids):
                return None
            if exe is None:
                exe = _readlink_at(dir_fd, "exe")
            uid = _read_uid_at(dir_fd)
            cwd = _readlink_at(dir_fd, "cwd")
        finally:
            os.close(dir_fd)
        return Candidate(
            identity=ProcessIdentity(boot_id(), pid, stat.start_ticks),
            command=os.path.basename(argv[0]),
            argv=argv,
            ppid=stat.ppid,
            rule=rule,
            uid=uid,
            user=self._user_name(uid),
            exe=exe,
            cwd=cwd,
            parent_command=self._command_of(stat.ppid),
        )

    def _first_match(self, argv: tuple[str, ...], exe: str | None) -> str | None:
        for rule in self.rules:
            if rule.matches(argv, exe):
                return rule.name
        return None

    def _descends_from_self(self, ppid: int, ppids: dict[int, int]) -> bool:
        if self.self_pid is None:
            return False
        pid = ppid
        for _ in range(_MAX_ANCESTRY_DEPTH):
            if pid == self.self_pid:
                return True
            if pid <= 1:
                return False
            parent = ppids.get(pid)
            if parent is None:
                try:
                    parent = _read_stat_path(f"{self.proc_root}/{pid}/stat").ppid
                except _Vanished:
                    # An exited ancestor's children were reparented; the chain read so far
                    # did not reach the daemon, so this one is not ours.
                    return False
                ppids[pid] = parent
            pid = parent
        return False

    def _command_of(self, pid: int) -> str | None:
        if pid <= 0:
            return None
        raw = _first_page_of_cmdline(f"{self.proc_root}/{pid}")
        if not raw:
            return None
        return os.path.basename(_split_argv(raw)[0]) or None

    def _user_name(self, uid: int | None) -> str | None:
        if uid is None:
            return None
        if uid not in self._user_names:
            try:
                self._user_names[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self._user_names[uid] = None  # a uid without a passwd entry (containers)
        return self._user_names[uid]


# -- reading /proc -----------------------------------------------------------------------------


def _first_page_of_cmdline(process_dir: str) -> bytes | None:
    """The first bytes of a process's command line (empty for a kernel thread or a zombie),
    None when it cannot be read: the one read a scan makes of every process."""
    try:
        fd = os.open(f"{process_dir}/cmdline", os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, _FIRST_READ_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)


def _split_argv(raw: bytes) -> tuple[str, ...]:
    # Arguments end in NUL; a process that rewrote its title may have left none.
    return tuple(os.fsdecode(part) for part in raw.rstrip(b"\0").split(b"\0"))


def _read_all_at(dir_fd: int, name: str) -> bytes:
    try:
        fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
    except OSError as exc:
        raise _Vanished(name) from exc
    try:
        chunks = []
        while True:
            chunk = os.read(fd, _FULL_READ_BYTES)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    except OSError as exc:
        raise _Vanished(name) from exc
    finally:
        os.close(fd)


def _read_stat_at(dir_fd: int) -> StatFields:
    raw = _read_all_at(dir_fd, "stat")
    try:
        return parse_stat(raw)
    except (ValueError, IndexError) as exc:
        raise _Vanished("stat") from exc


def _read_stat_path(path: str) -> StatFields:
    try:
        with open(path, "rb") as f:
            return parse_stat(f.read())
    except (OSError, ValueError, IndexError) as exc:
        raise _Vanished(path) from exc


def _read_uid_at(dir_fd: int) -> int | None:
    """The real uid (as `ps -o ruser` shows), from the Uid: line of status."""
    try:
        raw = _read_all_at(dir_fd, "status")
    except _Vanished:
        return None
    for line in raw.splitlines():
        if line.startswith(b"Uid:"):
            return int(line.split()[1])
    return None


def _readlink_path(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _readlink_at(dir_fd: int, name: str) -> str | None:
    # exe and cwd need ptrace access: another user's process, or a kernel thread, gives None.
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return None
