"""The watch configuration: the YAML file, its validation, the flags that override it, and the
filters that decide whether a matched process is governed.

Precedence, lowest first: the built-in defaults (app.defaults) < the config file < command-line
flags (`apply_overrides`). A key the file leaves out keeps its default; a flag that is given
wins over the file.

The file (every key optional; deploy/watch-config.yaml shows them all):

    scan_interval: 10s                 # durations: 500ms, 10s, 1m30s, 2h, 7d or plain seconds
    target_commands: [ffmpeg, gst-launch-1.0]
    discovery: auto                    # events | poll | auto
    default_limits: {cpu_quota: 150, cpu_weight: 100, memory_limit: 2048}
    filters: {allowed_users, blocked_users, allowed_uids, blocked_uids, allowed_parents,
              blocked_parents, min_runtime, max_runtime, allowed_dirs, blocked_dirs}
    commands:
      ffmpeg:
        limits: {...}                  # only the keys given; the rest come from default_limits
        filters: {...}                 # replaces the global filters for this command entirely
        match: {exe: /usr/bin/ffmpeg, cmdline_regex: "-f flv"}   # extra criteria for its rule
    retry: {enabled, max_attempts, initial_delay, multiplier, max_delay, jitter}
    health: {degraded_scan_failures, degraded_attach_failures, unhealthy_scan_failures,
             stale_scan_after, snapshot_interval}
    retention: 30d
    cgroup: {root: /sys/fs/cgroup, parent: ffrtmp, version: auto}   # auto | v1 | v2

Decisions worth knowing:
- A command listed under `commands` is a target even when `target_commands` does not list it:
  whoever wrote limits for it wants it governed. It is appended after the listed targets. The
  `--target` flag, given last, is the complete list and does not get this addition.
- Unknown keys anywhere, duplicate keys and values of the wrong type are errors that name the
  file, the line and the key (ConfigError); nothing is silently ignored.
- An empty section (`filters:` with nothing under it) or an empty list means "nothing set".
"""

from __future__ import annotations

import math
import posixpath
import pwd
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import yaml

from app import defaults
from app.backoff import BackoffPolicy
from app.candidate import Candidate
from app.durations import format_duration, parse_duration
from app.health import HealthThresholds
from app.limits import MAX_CPU_WEIGHT, MIN_CPU_WEIGHT, MIN_MEMORY_LIMIT_MB, Limits
from app.matching import MatchRule

DISCOVERY_MODES = ("events", "poll", "auto")
CGROUP_VERSIONS = ("auto", "v1", "v2")


class ConfigError(ValueError):
    """A configuration that cannot be used. The message is one sentence naming the file, the
    line and the key (or the flag) that is wrong."""


# --- value checks -------------------------------------------------------------------------
# Each check takes a plain value and returns it converted, or raises _Invalid with a predicate
# such as "must be an integer, not 'x'". The YAML reader puts "<file>, line N: <key> " in front
# of it, apply_overrides puts "<flag> ", the dataclasses put "<field> ": one wording everywhere.


class _Invalid(Exception):
    pass


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return str(value)


def _parses_as_duration(text: str) -> bool:
    try:
        parse_duration(text)
    except ValueError:
        return False
    return True


def _duration(value: Any, *, allow_zero: bool = False) -> float:
    want = "a duration of zero or more" if allow_zero else "a positive duration"
    seconds = None
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        try:
            seconds = parse_duration(value)
        except ValueError:
            seconds = None
    if (
        seconds is not None
        and math.isfinite(seconds)
        and (seconds > 0 or allow_zero and seconds == 0)
    ):
        return float(seconds)
    malformed = isinstance(value, str) and not _parses_as_duration(value.strip().lstrip("-"))
    hint = " (write durations like 500ms, 10s or 1m30s)" if malformed else ""
    raise _Invalid(f"must be {want}, not {_show(value)}{hint}")


def _positive_duration(value: Any) -> float:
    return _duration(value)


def _non_negative_duration(value: Any) -> float:
    return _duration(value, allow_zero=True)


def _optional_positive_duration(value: Any) -> float | None:
    return None if value is None else _duration(value)


def _whole_number(value: Any, minimum: int, maximum: int | None = None, unit: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"must be a whole number{' of' + unit if unit else ''}, not {_show(value)}")
    if maximum is not None and not minimum <= value <= maximum:
        raise _Invalid(f"must be between {minimum} and {maximum}, not {value}")
    if value < minimum:
        raise _Invalid(f"must be at least {minimum}{unit}, not {value}")
    return value


def _count(value: Any) -> int:
    return _whole_number(value, 1)


def _cpu_weight(value: Any) -> int:
    return _whole_number(value, MIN_CPU_WEIGHT, MAX_CPU_WEIGHT)


def _memory_limit(value: Any) -> int | None:
    if value is None:
        return None
    return _whole_number(value, MIN_MEMORY_LIMIT_MB, unit=" MB")


def _cpu_quota(value: Any) -> float | None:
    """Percent of one core; "150%" is accepted as well as 150. None means no quota."""
    if value is None:
        return None
    number = value
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            number = float(value.strip()[:-1])
        except ValueError:
            number = value
    if (
        isinstance(number, bool)
        or not isinstance(number, int | float)
        or not math.isfinite(number)
        or not number > 0
    ):
        raise _Invalid(f"must be a positive percentage of one core, not {_show(value)}")
    return float(number)


def _number(value: Any, *, minimum: float, below: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Invalid(f"must be a number, not {_show(value)}")
    if below is not None and not minimum <= value < below:
        raise _Invalid(f"must be at least {minimum:g} and below {below:g}, not {value:g}")
    if value < minimum:
        raise _Invalid(f"must be at least {minimum:g}, not {value:g}")
    return float(value)


def _multiplier(value: Any) -> float:
    return _number(value, minimum=1)


def _jitter(value: Any) -> float:
    return _number(value, minimum=0, below=1)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"must be true or false, not {_show(value)}")
    return value


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise _Invalid(f"must be one of {', '.join(choices)}, not {_show(value)}")
        return value

    return check


def _command_name(value: Any) -> str:
    if not isinstance(value, str) or not value or "/" in value or "\0" in value:
        raise _Invalid(
            f"must be a command name (the basename of argv[0], without '/'), not {_show(value)}"
        )
    return value


def _user_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _Invalid(f"must be a user name, not {_show(value)}")
    return value


def _uid(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Invalid(f"must be a uid (a whole number of 0 or more), not {_show(value)}")
    return value


def _parent(value: Any) -> str | int:
    """A parent's command name, or its pid as a number."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value and "/" not in value:
        return value
    raise _Invalid(f"must be a command name or a pid, not {_show(value)}")


def _absolute_path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise _Invalid(f"must be an absolute path, not {_show(value)}")
    # normpath keeps a leading "//"; a folder test must not depend on how it was spelled.
    return "/" + posixpath.normpath(value).lstrip("/")


def _regex(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"must be a regular expression, not {_show(value)}")
    try:
        re.compile(value)
    except re.error as exc:
        raise _Invalid(f"must be a regular expression, not {value!r} ({exc})") from None
    return value


def _cgroup_parent(value: Any) -> str:
    parts = value.split("/") if isinstance(value, str) else []
    if not parts or value.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise _Invalid(
            f"must be a cgroup name relative to the cgroup root, such as 'ffrtmp', "
            f"not {_show(value)}"
        )
    return value


def _check_fields(obj: Any, checks: Mapping[str, Callable[[Any], Any]]) -> None:
    for name, check in checks.items():
        try:
            check(getattr(obj, name))
        except _Invalid as exc:
            raise ValueError(f"{name} {exc}") from None


def _seconds_text(seconds: float) -> str | float:
    """The shortest way an operator would write `seconds`, if it reads back exactly."""
    text = format_duration(seconds) if seconds else "0s"
    return text if parse_duration(text) == seconds else seconds


# --- filters --------------------------------------------------------------------------------


class Decision(StrEnum):
    ATTACH = "attach"
    SKIP = "skip"  # permanent for this process
    DEFER = "defer"  # not yet: evaluate again at Verdict.retry_at


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    reason: str = ""  # why it was skipped or deferred, for records and logs
    retry_at: float | None = None  # epoch seconds; set only when deferred

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
    deferred, not skipped; one older than max_runtime is skipped.
    """

    allowed_users: tuple[str, ...] = ()
    blocked_users: tuple[str, ...] = ()
    allowed_uids: tuple[int, ...] = ()
    blocked_uids: tuple[int, ...] = ()
    allowed_parents: tuple[str | int, ...] = ()
    blocked_parents: tuple[str | int, ...] = ()
    min_runtime_s: float = defaults.FILTER_MIN_RUNTIME_SECONDS
    max_runtime_s: float | None = defaults.FILTER_MAX_RUNTIME_SECONDS
    allowed_dirs: tuple[str, ...] = ()
    blocked_dirs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_fields(
            self,
            {"min_runtime_s": _non_negative_duration, "max_runtime_s": _optional_positive_duration},
        )
        for name, check in _FILTER_LIST_CHECKS.items():
            for item in getattr(self, name):
                try:
                    check(item)
                except _Invalid as exc:
                    raise ValueError(f"{name} entry {exc}") from None
        if self.max_runtime_s is not None and self.max_runtime_s <= self.min_runtime_s:
            raise ValueError(
                f"max_runtime must be longer than min_runtime "
                f"({format_duration(self.min_runtime_s)}), "
                f"not {format_duration(self.max_runtime_s)}"
            )

    def evaluate(self, candidate: Candidate, now: float) -> Verdict:
        """Attach, skip (with the reason) or defer `candidate`; `now` is epoch seconds."""
        for check in (self._by_user, self._by_uid, self._by_parent, self._by_dir):
            reason = check(candidate)
            if reason:
                return Verdict(Decision.SKIP, reason)
        return self._by_runtime(candidate, now)

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

    def _by_runtime(self, candidate: Candidate, now: float) -> Verdict:
        if not self.min_runtime_s and self.max_runtime_s is None:
            return ATTACH
        started = candidate.identity.started_at.timestamp()
        runtime = max(0.0, now - started)
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


_FILTER_LIST_CHECKS: dict[str, Callable[[Any], Any]] = {
    "allowed_users": _user_name,
    "blocked_users": _user_name,
    "allowed_uids": _uid,
    "blocked_uids": _uid,
    "allowed_parents": _parent,
    "blocked_parents": _parent,
    "allowed_dirs": _absolute_path,
    "blocked_dirs": _absolute_path,
}


# --- the configuration ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandConfig:
    """What `commands.<name>` sets. limits: default_limits with this command's keys applied.
    filters: None means the global filters apply. exe / cmdline_regex: extra match criteria."""

    limits: Limits = field(default_factory=Limits)
    filters: Filters | None = None
    exe: str | None = None
    cmdline_regex: str | None = None

    def __post_init__(self) -> None:
        _check_fields(
            self,
            {
                "exe": lambda v: v if v is None else _absolute_path(v),
                "cmdline_regex": lambda v: v if v is None else _regex(v),
            },
        )


@dataclass(frozen=True, slots=True)
class RetrySettings:
    enabled: bool = defaults.RETRY_ENABLED
    max_attempts: int = defaults.RETRY_MAX_ATTEMPTS
    initial_delay_s: float = defaults.RETRY_INITIAL_DELAY_SECONDS
    multiplier: float = defaults.RETRY_MULTIPLIER
    max_delay_s: float = defaults.RETRY_MAX_DELAY_SECONDS
    jitter: float = defaults.RETRY_JITTER

    def __post_init__(self) -> None:
        _check_fields(self, _RETRY_CHECKS)
        if self.max_delay_s < self.initial_delay_s:
            raise ValueError(
                f"max_delay must not be shorter than initial_delay "
                f"({format_duration(self.initial_delay_s)}), "
                f"not {format_duration(self.max_delay_s)}"
            )

    def policy(self) -> BackoffPolicy:
        """The backoff the retry queue follows."""
        return BackoffPolicy(
            initial=self.initial_delay_s,
            multiplier=self.multiplier,
            max_delay=self.max_delay_s,
            jitter=self.jitter,
            max_attempts=self.max_attempts,
        )


_RETRY_CHECKS: dict[str, Callable[[Any], Any]] = {
    "enabled": _boolean,
    "max_attempts": _count,
    "initial_delay_s": _positive_duration,
    "multiplier": _multiplier,
    "max_delay_s": _positive_duration,
    "jitter": _jitter,
}


@dataclass(frozen=True, slots=True)
class HealthSettings:
    degraded_scan_failures: int = defaults.HEALTH_DEGRADED_SCAN_FAILURES
    degraded_attach_failures: int = defaults.HEALTH_DEGRADED_ATTACH_FAILURES
    unhealthy_scan_failures: int = defaults.HEALTH_UNHEALTHY_SCAN_FAILURES
    stale_scan_after_s: float = defaults.HEALTH_STALE_SCAN_SECONDS
    snapshot_interval_s: float = defaults.HEALTH_SNAPSHOT_INTERVAL_SECONDS

    def thresholds(self) -> HealthThresholds:
        return HealthThresholds(
            degraded_scan_failures=self.degraded_scan_failures,
            degraded_attach_failures=self.degraded_attach_failures,
            unhealthy_scan_failures=self.unhealthy_scan_failures,
            stale_scan_after=self.stale_scan_after_s,
        )

    def __post_init__(self) -> None:
        _check_fields(self, _HEALTH_CHECKS)
        if self.unhealthy_scan_failures < self.degraded_scan_failures:
            raise ValueError(
                f"unhealthy_scan_failures must not be below degraded_scan_failures "
                f"({self.degraded_scan_failures}), not {self.unhealthy_scan_failures}"
            )


_HEALTH_CHECKS: dict[str, Callable[[Any], Any]] = {
    "degraded_scan_failures": _count,
    "degraded_attach_failures": _count,
    "unhealthy_scan_failures": _count,
    "stale_scan_after_s": _positive_duration,
    "snapshot_interval_s": _positive_duration,
}


@dataclass(frozen=True, slots=True)
class CgroupSettings:
    """root: where the cgroup hierarchies are mounted; parent: our cgroup below it (per
    controller on v1); version: which cgroup version to use, auto to detect it."""

    root: Path = defaults.CGROUP_ROOT
    parent: str = defaults.CGROUP_PARENT_NAME
    version: str = defaults.CGROUP_VERSION

    def __post_init__(self) -> None:
        _check_fields(
            self,
            {
                "root": lambda v: _absolute_path(str(v)),
                "parent": _cgroup_parent,
                "version": _choice(CGROUP_VERSIONS),
            },
        )


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """The whole configuration of `ffrtmp watch`; WatchConfig() is the built-in defaults."""

    scan_interval: float = defaults.SCAN_INTERVAL_SECONDS
    target_commands: tuple[str, ...] = defaults.TARGET_COMMANDS
    default_limits: Limits = field(default_factory=Limits)
    filters: Filters = field(default_factory=Filters)
    commands: Mapping[str, CommandConfig] = field(default_factory=lambda: MappingProxyType({}))
    discovery: str = defaults.DISCOVERY_MODE
    retry: RetrySettings = field(default_factory=RetrySettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    retention_s: float = defaults.RETENTION_SECONDS
    cgroup: CgroupSettings = field(default_factory=CgroupSettings)
    source: Path | None = None  # the file it was read from; None for defaults only

    def __post_init__(self) -> None:
        _check_fields(
            self,
            {
                "scan_interval": _positive_duration,
                "discovery": _choice(DISCOVERY_MODES),
                "retention_s": _positive_duration,
            },
        )
        if not self.target_commands:
            raise ValueError("target_commands must name at least one command")
        for name in self.target_commands:
            try:
                _command_name(name)
            except _Invalid as exc:
                raise ValueError(f"target_commands entry {exc}") from None
        if not isinstance(self.commands, MappingProxyType):
            object.__setattr__(self, "commands", MappingProxyType(dict(self.commands)))

    def rules(self) -> list[MatchRule]:
        """One match rule per target command, named after it, with the command's extra
        `match` criteria when it has any."""
        rules = []
        for name in self.target_commands:
            command = self.commands.get(name)
            rules.append(
                MatchRule(
                    name=name,
                    command=name,
                    exe=command.exe if command else None,
                    cmdline_regex=command.cmdline_regex if command else None,
                )
            )
        return rules

    def limits_for(self, rule_name: str) -> Limits:
        """The limits of the command's own section, else default_limits."""
        command = self.commands.get(rule_name)
        return command.limits if command else self.default_limits

    def filters_for(self, rule_name: str) -> Filters:
        """The command's own filters if it has any (they replace the global ones), else the
        global filters."""
        command = self.commands.get(rule_name)
        if command is not None and command.filters is not None:
            return command.filters
        return self.filters

    def evaluate(self, candidate: Candidate, now: float) -> Verdict:
        """The filters of the candidate's rule applied to it; `now` is epoch seconds."""
        return self.filters_for(candidate.rule).evaluate(candidate, now)


# --- reading the file -----------------------------------------------------------------------

_TOP_KEYS = (
    "scan_interval",
    "target_commands",
    "discovery",
    "default_limits",
    "filters",
    "commands",
    "retry",
    "health",
    "retention",
    "cgroup",
)
# YAML key -> (Limits field, check)
_LIMIT_KEYS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "cpu_quota": ("cpu_quota", _cpu_quota),
    "cpu_weight": ("cpu_weight", _cpu_weight),
    "memory_limit": ("memory_limit_mb", _memory_limit),
}
_FILTER_DURATION_KEYS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "min_runtime": ("min_runtime_s", _non_negative_duration),
    "max_runtime": ("max_runtime_s", _optional_positive_duration),
}
_RETRY_KEYS: dict[str, str] = {
    "enabled": "enabled",
    "max_attempts": "max_attempts",
    "initial_delay": "initial_delay_s",
    "multiplier": "multiplier",
    "max_delay": "max_delay_s",
    "jitter": "jitter",
}
_HEALTH_KEYS: dict[str, str] = {
    "degraded_scan_failures": "degraded_scan_failures",
    "degraded_attach_failures": "degraded_attach_failures",
    "unhealthy_scan_failures": "unhealthy_scan_failures",
    "stale_scan_after": "stale_scan_after_s",
    "snapshot_interval": "snapshot_interval_s",
}
_CGROUP_CHECKS: dict[str, Callable[[Any], Any]] = {
    "root": _absolute_path,
    "parent": _cgroup_parent,
    "version": _choice(CGROUP_VERSIONS),
}
_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"

_Entries = dict[str, tuple[yaml.Node, yaml.Node]]  # key -> (key node, value node)


class _Reader:
    """Walks the composed YAML nodes, so that every error can name its line."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._constructor = yaml.constructor.SafeConstructor()

    def fail(self, node: yaml.Node, message: str) -> NoReturn:
        raise ConfigError(f"{self.name}, line {node.start_mark.line + 1}: {message}")

    def plain(self, node: yaml.Node) -> Any:
        """The value of a scalar node; an empty list or dict stands for a collection, enough
        for the checks to reject it by type."""
        if isinstance(node, yaml.SequenceNode):
            return []
        if isinstance(node, yaml.MappingNode):
            return {}
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError:
            self.fail(node, f"the value {node.value!r} has a YAML tag ffrtmp does not read")

    def value(self, node: yaml.Node, key: str, check: Callable[[Any], Any]) -> Any:
        try:
            return check(self.plain(node))
        except _Invalid as exc:
            self.fail(node, f"{key} {exc}")

    def entries(self, node: yaml.Node, where: str, allowed: Sequence[str] | None) -> _Entries:
        """The keys of a mapping node; `allowed` None accepts any name (command names)."""
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
            return {}
        if not isinstance(node, yaml.MappingNode):
            what = f"{where} must be a mapping" if where else "the file must be a mapping of keys"
            self.fail(node, f"{what}, not {_show(self.plain(node))}")
        suffix = f" in {where}" if where else ""
        found: _Entries = {}
        for key_node, value_node in node.value:
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == _STR_TAG):
                shown = repr(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "a list"
                self.fail(key_node, f"keys{suffix} must be plain names, not {shown}")
            key = key_node.value
            if allowed is not None and key not in allowed:
                self.fail(key_node, f"unknown key {key!r}{suffix}")
            if key in found:
                self.fail(key_node, f"duplicate key {key!r}{suffix}")
            found[key] = (key_node, value_node)
        return found

    def items(self, node: yaml.Node, key: str, check: Callable[[Any], Any]) -> tuple:
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
            return ()
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, f"{key} must be a list, not {_show(self.plain(node))}")
        return tuple(self.value(item, f"{key}[{i}]", check) for i, item in enumerate(node.value))

    def build(self, node: yaml.Node, where: str, entries: _Entries, make: Callable[[], Any]) -> Any:
        """Call `make`; a cross-field error it raises is reported at the line of the key its
        message starts with, or of any key given in the section."""
        try:
            return make()
        except ValueError as exc:
            blamed = str(exc).split()[0]
            given = entries.get(blamed) or next(iter(entries.values()), (node, node))
            self.fail(given[0], f"{where}.{exc}")


def _read_limits(reader: _Reader, node: yaml.Node, where: str, base: Limits) -> Limits:
    entries = reader.entries(node, where, tuple(_LIMIT_KEYS))
    changes = {}
    for key, (_, value_node) in entries.items():
        attribute, check = _LIMIT_KEYS[key]
        changes[attribute] = reader.value(value_node, f"{where}.{key}", check)
    return reader.build(node, where, entries, lambda: replace(base, **changes))


def _read_filters(reader: _Reader, node: yaml.Node, where: str) -> Filters:
    allowed = tuple(_FILTER_LIST_CHECKS) + tuple(_FILTER_DURATION_KEYS)
    entries = reader.entries(node, where, allowed)
    values: dict[str, Any] = {}
    for key, (_, value_node) in entries.items():
        if key in _FILTER_DURATION_KEYS:
            attribute, check = _FILTER_DURATION_KEYS[key]
            values[attribute] = reader.value(value_node, f"{where}.{key}", check)
        else:
            items = reader.items(value_node, f"{where}.{key}", _FILTER_LIST_CHECKS[key])
            values[key] = tuple(dict.fromkeys(items))
    return reader.build(node, where, entries, lambda: Filters(**values))


def _read_command(reader: _Reader, node: yaml.Node, where: str, base: Limits) -> CommandConfig:
    entries = reader.entries(node, where, ("limits", "filters", "match"))
    limits = base
    if "limits" in entries:
        limits = _read_limits(reader, entries["limits"][1], f"{where}.limits", base)
    filters = None
    if "filters" in entries:
        filters = _read_filters(reader, entries["filters"][1], f"{where}.filters")
    match: dict[str, Any] = {}
    if "match" in entries:
        match_where = f"{where}.match"
        match_entries = reader.entries(entries["match"][1], match_where, ("exe", "cmdline_regex"))
        checks = {"exe": _absolute_path, "cmdline_regex": _regex}
        for key, (_, value_node) in match_entries.items():
            match[key] = reader.value(value_node, f"{match_where}.{key}", checks[key])
    return CommandConfig(limits=limits, filters=filters, **match)


def _read_section(
    reader: _Reader,
    node: yaml.Node,
    where: str,
    keys: Mapping[str, str],
    checks: Mapping[str, Callable[[Any], Any]],
    make: type,
) -> Any:
    """A section whose keys map one to one onto the fields of `make` (YAML key -> field)."""
    entries = reader.entries(node, where, tuple(keys))
    values = {
        keys[key]: reader.value(value_node, f"{where}.{key}", checks[keys[key]])
        for key, (_, value_node) in entries.items()
    }
    return reader.build(node, where, entries, lambda: make(**values))


def _read_document(reader: _Reader, root: yaml.Node | None, source: Path) -> WatchConfig:
    if root is None:  # an empty file: every default
        return WatchConfig(source=source)
    top = reader.entries(root, "", _TOP_KEYS)
    values: dict[str, Any] = {"source": source}

    def node(key: str) -> yaml.Node:
        return top[key][1]

    if "scan_interval" in top:
        values["scan_interval"] = reader.value(
            node("scan_interval"), "scan_interval", _positive_duration
        )
    if "retention" in top:
        values["retention_s"] = reader.value(node("retention"), "retention", _positive_duration)
    if "discovery" in top:
        values["discovery"] = reader.value(node("discovery"), "discovery", _choice(DISCOVERY_MODES))

    targets = defaults.TARGET_COMMANDS
    if "target_commands" in top:
        targets = reader.items(node("target_commands"), "target_commands", _command_name)
        for i, name in enumerate(targets):
            if name in targets[:i]:
                item = node("target_commands").value[i]
                reader.fail(item, f"target_commands lists {name!r} twice")

    default_limits = Limits()
    if "default_limits" in top:
        default_limits = _read_limits(reader, node("default_limits"), "default_limits", Limits())
    values["default_limits"] = default_limits
    if "filters" in top:
        values["filters"] = _read_filters(reader, node("filters"), "filters")

    commands: dict[str, CommandConfig] = {}
    if "commands" in top:
        for name, (key_node, value_node) in reader.entries(
            node("commands"), "commands", None
        ).items():
            try:
                _command_name(name)
            except _Invalid as exc:
                reader.fail(key_node, f"commands key {exc}")
            commands[name] = _read_command(reader, value_node, f"commands.{name}", default_limits)
    values["commands"] = MappingProxyType(commands)
    targets = tuple(targets) + tuple(name for name in commands if name not in targets)
    if not targets:
        reader.fail(node("target_commands"), "target_commands must name at least one command")
    values["target_commands"] = targets

    if "retry" in top:
        values["retry"] = _read_section(
            reader, node("retry"), "retry", _RETRY_KEYS, _RETRY_CHECKS, RetrySettings
        )
    if "health" in top:
        values["health"] = _read_section(
            reader, node("health"), "health", _HEALTH_KEYS, _HEALTH_CHECKS, HealthSettings
        )
    if "cgroup" in top:
        entries = reader.entries(node("cgroup"), "cgroup", tuple(_CGROUP_CHECKS))
        cgroup = {
            key: reader.value(value_node, f"cgroup.{key}", _CGROUP_CHECKS[key])
            for key, (_, value_node) in entries.items()
        }
        if "root" in cgroup:
            cgroup["root"] = Path(cgroup["root"])
        values["cgroup"] = CgroupSettings(**cgroup)
    return WatchConfig(**values)


def load_config(path: str | Path | None) -> WatchConfig:
    """The configuration in the YAML file at `path` over the built-in defaults; None gives the
    defaults alone. Raises ConfigError with one sentence naming the file, line and key."""
    if path is None:
        return WatchConfig()
    name = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"{name} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name} cannot be read: it is not UTF-8 text") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = ", ".join(filter(None, (exc.context, exc.problem))) or "it cannot be parsed"
        raise ConfigError(f"{name}{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: invalid YAML: {exc}") from None
    return _read_document(_Reader(name), root, Path(path))


# --- command-line flags ---------------------------------------------------------------------


def _flag_value(flag: str, value: Any, check: Callable[[Any], Any]) -> Any:
    try:
        return check(value)
    except _Invalid as exc:
        raise ConfigError(f"{flag} {exc}") from None


def apply_overrides(
    config: WatchConfig,
    *,
    scan_interval: float | str | None = None,
    target_commands: Sequence[str] | None = None,
    cpu_quota: float | None = None,
    cpu_weight: int | None = None,
    memory_limit: int | None = None,
    discovery: str | None = None,
    retry_enabled: bool | None = None,
    max_retry_attempts: int | None = None,
    retention: float | str | None = None,
    cgroup_root: str | Path | None = None,
    cgroup_parent: str | None = None,
    cgroup_version: str | None = None,
) -> WatchConfig:
    """`config` with the command-line flags that were given applied over it.

    None (or an empty target list) means the flag was not given and the file or default
    stands. A limit flag (--cpu-quota, --cpu-weight, --memory-limit) overrides that limit
    everywhere: in default_limits and in every command's own limits, because the operator typed
    it last; limits the flags do not name keep their per-command values. --target is the
    complete list of targets: commands configured in the file but not named by it keep their
    settings yet are not watched. Bad values raise ConfigError naming the flag.
    """
    changes: dict[str, Any] = {}
    if scan_interval is not None:
        changes["scan_interval"] = _flag_value("--scan-interval", scan_interval, _positive_duration)
    if target_commands:
        names = tuple(_flag_value("--target", n, _command_name) for n in target_commands)
        changes["target_commands"] = tuple(dict.fromkeys(names))
    if discovery is not None:
        changes["discovery"] = _flag_value("--discovery", discovery, _choice(DISCOVERY_MODES))
    if retention is not None:
        changes["retention_s"] = _flag_value("--retention", retention, _positive_duration)

    limit_changes: dict[str, Any] = {}
    if cpu_quota is not None:
        limit_changes["cpu_quota"] = _flag_value("--cpu-quota", cpu_quota, _cpu_quota)
    if cpu_weight is not None:
        limit_changes["cpu_weight"] = _flag_value("--cpu-weight", cpu_weight, _cpu_weight)
    if memory_limit is not None:
        limit_changes["memory_limit_mb"] = _flag_value(
            "--memory-limit", memory_limit, _memory_limit
        )
    if limit_changes:
        changes["default_limits"] = replace(config.default_limits, **limit_changes)
        changes["commands"] = MappingProxyType(
            {
                name: replace(command, limits=replace(command.limits, **limit_changes))
                for name, command in config.commands.items()
            }
        )

    retry_changes: dict[str, Any] = {}
    if retry_enabled is not None:
        retry_changes["enabled"] = _flag_value("--enable-retry", retry_enabled, _boolean)
    if max_retry_attempts is not None:
        retry_changes["max_attempts"] = _flag_value(
            "--max-retry-attempts", max_retry_attempts, _count
        )
    if retry_changes:
        changes["retry"] = replace(config.retry, **retry_changes)

    cgroup_changes: dict[str, Any] = {}
    if cgroup_root is not None:
        root = _flag_value("--cgroup-root", str(cgroup_root), _absolute_path)
        cgroup_changes["root"] = Path(root)
    if cgroup_parent is not None:
        cgroup_changes["parent"] = _flag_value("--cgroup-parent", cgroup_parent, _cgroup_parent)
    if cgroup_version is not None:
        cgroup_changes["version"] = _flag_value(
            "--cgroup-version", cgroup_version, _choice(CGROUP_VERSIONS)
        )
    if cgroup_changes:
        changes["cgroup"] = replace(config.cgroup, **cgroup_changes)
    return replace(config, **changes)


# --- printing -------------------------------------------------------------------------------


def _number_text(value: float | None) -> float | int | None:
    return int(value) if value is not None and value.is_integer() else value


def _limits_dict(limits: Limits) -> dict:
    return {
        "cpu_quota": _number_text(limits.cpu_quota),
        "cpu_weight": limits.cpu_weight,
        "memory_limit": limits.memory_limit_mb,
    }


def _filters_dict(filters: Filters) -> dict:
    out: dict[str, Any] = {}
    for f in fields(Filters):
        value = getattr(filters, f.name)
        if f.name in ("min_runtime_s", "max_runtime_s"):
            out[f.name.removesuffix("_s")] = None if value is None else _seconds_text(value)
        else:
            out[f.name] = list(value)
    return out


def effective_dict(config: WatchConfig) -> dict:
    """The configuration as plain data in the file's own schema, every default filled in:
    for logging at start-up and for `ffrtmp config check`. Written out as YAML it is a valid
    config file that loads back to the same configuration."""
    commands = {}
    for name, command in config.commands.items():
        entry: dict[str, Any] = {"limits": _limits_dict(command.limits)}
        if command.filters is not None:
            entry["filters"] = _filters_dict(command.filters)
        match = {"exe": command.exe, "cmdline_regex": command.cmdline_regex}
        match = {k: v for k, v in match.items() if v is not None}
        if match:
            entry["match"] = match
        commands[name] = entry
    retry, health = config.retry, config.health
    return {
        "scan_interval": _seconds_text(config.scan_interval),
        "target_commands": list(config.target_commands),
        "discovery": config.discovery,
        "default_limits": _limits_dict(config.default_limits),
        "filters": _filters_dict(config.filters),
        "commands": commands,
        "retry": {
            "enabled": retry.enabled,
            "max_attempts": retry.max_attempts,
            "initial_delay": _seconds_text(retry.initial_delay_s),
            "multiplier": _number_text(retry.multiplier),
            "max_delay": _seconds_text(retry.max_delay_s),
            "jitter": retry.jitter,
        },
        "health": {
            "degraded_scan_failures": health.degraded_scan_failures,
            "degraded_attach_failures": health.degraded_attach_failures,
            "unhealthy_scan_failures": health.unhealthy_scan_failures,
            "stale_scan_after": _seconds_text(health.stale_scan_after_s),
            "snapshot_interval": _seconds_text(health.snapshot_interval_s),
        },
        "retention": _seconds_text(config.retention_s),
        "cgroup": {
            "root": str(config.cgroup.root),
            "parent": config.cgroup.parent,
            "version": config.cgroup.version,
        },
    }
