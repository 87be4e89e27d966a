"""The filters: the rules every matched process passes before it is governed.

Each rule says attach, skip (for good, with the reason recorded) or defer (not yet: evaluate
again later). Filters are settings like any other (`ffrtmp.settings`): the file's `filters:`
section and each command's own `filters:` are read into this class.
"""

from __future__ import annotations

import posixpath
import pwd
from dataclasses import dataclass
from enum import StrEnum

from ffrtmp import defaults
from ffrtmp.candidate import Candidate
from ffrtmp.durations import format_duration
from ffrtmp.settings import (
    ABSOLUTE_PATH,
    PARENT,
    UID,
    USER_NAME,
    InvalidSetting,
    duration,
    empty_means,
    list_of,
    setting,
    unlimited,
    validate,
)


class Decision(StrEnum):
    ATTACH = "attach"
    SKIP = "skip"  # permanent for this process
    DEFER = "defer"  # not yet: evaluate again at Verdict.retry_at


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    reason: str = ""  # why it was skipped or deferred, for records and logs
    retry_at: float | None = None  # on the boot-time clock, like since_boot; only when deferred

    @property
    def attach(self) -> bool:
        return self.decision is Decision.ATTACH


ATTACH = Verdict(Decision.ATTACH)


def _within(path: str, folder: str) -> bool:
    return folder == "/" or path == folder or path.startswith(folder + "/")


def _user_of(candidate: Candidate) -> str | None:
    if candidate.user is not None or candidate.uid is None:
        return candidate.user
    try:
        return pwd.getpwuid(candidate.uid).pw_name
    except KeyError:
        return None


@dataclass(frozen=True, slots=True)
class Filters:
    """Which matched processes are governed. An empty allow-list allows all; a block-list
    entry wins over an allow-list entry.

    Parents are named by the parent's command (basename of its argv[0]) or by its pid as a
    number. Dirs hold the process's working directory: a folder covers itself and everything
    below it (/srv/a covers /srv/a/b but not /srv/ab). A process younger than min_runtime is
    deferred, not skipped; one older than max_runtime is skipped. An empty min_runtime is 0s;
    an empty max_runtime, 0 or `unlimited` is no maximum (the original daemon wrote "").
    """

    allowed_users: tuple[str, ...] = setting("allowed_users", list_of(USER_NAME), default=())
    blocked_users: tuple[str, ...] = setting("blocked_users", list_of(USER_NAME), default=())
    allowed_uids: tuple[int, ...] = setting("allowed_uids", list_of(UID), default=())
    blocked_uids: tuple[int, ...] = setting("blocked_uids", list_of(UID), default=())
    allowed_parents: tuple[str | int, ...] = setting("allowed_parents", list_of(PARENT), default=())
    blocked_parents: tuple[str | int, ...] = setting("blocked_parents", list_of(PARENT), default=())
    min_runtime_s: float = setting(
        "min_runtime",
        empty_means(duration(allow_zero=True), 0.0),
        default=defaults.FILTER_MIN_RUNTIME_SECONDS,
    )
    max_runtime_s: float | None = setting(
        "max_runtime", unlimited(duration()), default=defaults.FILTER_MAX_RUNTIME_SECONDS
    )
    allowed_dirs: tuple[str, ...] = setting("allowed_dirs", list_of(ABSOLUTE_PATH), default=())
    blocked_dirs: tuple[str, ...] = setting("blocked_dirs", list_of(ABSOLUTE_PATH), default=())

    def __post_init__(self) -> None:
        validate(self)
        if self.max_runtime_s is not None and self.max_runtime_s <= self.min_runtime_s:
            raise InvalidSetting(
                "max_runtime",
                f"must be longer than min_runtime ({format_duration(self.min_runtime_s)}), "
                f"not {format_duration(self.max_runtime_s)}",
            )

    def evaluate(self, candidate: Candidate, since_boot: float) -> Verdict:
        """Attach, skip (with the reason) or defer `candidate`. `since_boot` is the moment of
        judgement on the boot-time clock (ffrtmp.clock.seconds_since_boot), the clock a
        process's start ticks count on: no step of the wall clock changes its runtime."""
        for check in (self._by_user, self._by_uid, self._by_parent, self._by_dir):
            reason = check(candidate)
            if reason:
                return Verdict(Decision.SKIP, reason)
        return self._by_runtime(candidate, since_boot)

    def _by_user(self, candidate: Candidate) -> str | None:
        if not (self.allowed_users or self.blocked_users):
            return None
        user = _user_of(candidate)
        if user is not None and user in self.blocked_users:
            return f"user {user!r} is in blocked_users"
        if self.allowed_users and user not in self.allowed_users:
            if user is None:
                return "its user is unknown and allowed_users is set"
            return f"user {user!r} is not in allowed_users"
        return None

    def _by_uid(self, candidate: Candidate) -> str | None:
        uid = candidate.uid
        if uid is not None and uid in self.blocked_uids:
            return f"uid {uid} is in blocked_uids"
        if self.allowed_uids and uid not in self.allowed_uids:
            if uid is None:
                return "its uid is unknown and allowed_uids is set"
            return f"uid {uid} is not in allowed_uids"
        return None

    def _by_parent(self, candidate: Candidate) -> str | None:
        if not (self.allowed_parents or self.blocked_parents):
            return None

        def listed(entries: tuple[str | int, ...]) -> bool:
            return any(
                entry == candidate.ppid
                if isinstance(entry, int)
                else entry == candidate.parent_command
                for entry in entries
            )

        parent = f"pid {candidate.ppid}"
        if candidate.parent_command is not None:
            parent = f"{candidate.parent_command!r} (pid {candidate.ppid})"
        if listed(self.blocked_parents):
            return f"parent {parent} is in blocked_parents"
        if self.allowed_parents and not listed(self.allowed_parents):
            return f"parent {parent} is not in allowed_parents"
        return None

    def _by_dir(self, candidate: Candidate) -> str | None:
        if not (self.allowed_dirs or self.blocked_dirs):
            return None
        if candidate.cwd is None:
            if self.allowed_dirs:
                return "its working directory is unknown and allowed_dirs is set"
            return None
        cwd = "/" + posixpath.normpath(candidate.cwd).lstrip("/")
        for folder in self.blocked_dirs:
            if _within(cwd, folder):
                return f"working directory {cwd!r} is within blocked_dirs entry {folder!r}"
        if self.allowed_dirs and not any(_within(cwd, f) for f in self.allowed_dirs):
            return f"working directory {cwd!r} is not within any of allowed_dirs"
        return None

    def _by_runtime(self, candidate: Candidate, since_boot: float) -> Verdict:
        if not self.min_runtime_s and self.max_runtime_s is None:
            return ATTACH
        started = candidate.identity.started_since_boot
        runtime = max(0.0, since_boot - started)
        if self.max_runtime_s is not None and runtime > self.max_runtime_s:
            return Verdict(
                Decision.SKIP,
                f"it has run for {format_duration(runtime)}, "
                f"past max_runtime {format_duration(self.max_runtime_s)}",
            )
        if runtime < self.min_runtime_s:
            return Verdict(
                Decision.DEFER,
                f"it has run for {format_duration(runtime)}, "
                f"less than min_runtime {format_duration(self.min_runtime_s)}",
                retry_at=started + self.min_runtime_s,
            )
        return ATTACH
