"""The watch configuration's sections: one settings class per section of the file, each key
declared once with `setting()` (ffrtmp.settings); WatchConfig() is the built-in defaults.

The value classes check their own values (`Limits`, `BackoffPolicy`, `HealthThresholds`,
`Filters`, the sections below); ffrtmp.config.reader reads a file into them and
ffrtmp.config.overrides applies the flags and prints them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from ffrtmp import defaults
from ffrtmp.backoff import BackoffPolicy
from ffrtmp.candidate import Candidate
from ffrtmp.config.original import Notice
from ffrtmp.filters import Filters, Verdict
from ffrtmp.health import SNAPSHOT_INTERVAL, HealthThresholds
from ffrtmp.limits import MAX_CPU_WEIGHT, MIN_CPU_WEIGHT, Limits
from ffrtmp.matching import MatchRule
from ffrtmp.settings import (
    ABSOLUTE_PATH,
    BOOLEAN,
    COMMAND_NAME,
    DIRECTORY,
    REGEX,
    Flag,
    InvalidSetting,
    choice,
    duration,
    list_of,
    optional,
    section,
    setting,
    text,
    validate,
    whole_number,
)

DISCOVERY_MODES = ("events", "poll", "auto")
CGROUP_VERSIONS = ("auto", "v1", "v2")


class ConfigError(ValueError):
    """A configuration that cannot be used. The message is one sentence naming the file, the
    line and the key (or the flag) that is wrong."""


# --- the configuration ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MatchCriteria:
    """Extra criteria a process must meet, besides its command name, to match its rule."""

    exe: str | None = setting("exe", optional(ABSOLUTE_PATH), default=None)
    cmdline_regex: str | None = setting("cmdline_regex", optional(REGEX), default=None)

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True)
class CommandConfig:
    """What `commands.<name>` sets. limits: default_limits with this command's keys applied;
    filters: the global filters with this command's keys applied (None, when built in code:
    the global filters as they are)."""

    limits: Limits = section("limits", Limits)
    filters: Filters | None = section("filters", Filters, default=None)
    match: MatchCriteria = section("match", MatchCriteria, omit_empty=True)


@dataclass(frozen=True, slots=True)
class RetrySettings:
    enabled: bool = setting(
        "enabled",
        BOOLEAN,
        default=defaults.RETRY_ENABLED,
        flag=Flag(
            "--enable-retry/--no-retry",
            "Retry failed attaches with backoff (default on).",
            param="retry_enabled",
        ),
    )
    policy: BackoffPolicy = section("policy", BackoffPolicy, flatten=True)

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True)
class HealthSettings:
    thresholds: HealthThresholds = section("thresholds", HealthThresholds, flatten=True)
    snapshot_interval: float = setting(
        "snapshot_interval", SNAPSHOT_INTERVAL, default=defaults.HEALTH_SNAPSHOT_INTERVAL_SECONDS
    )

    def __post_init__(self) -> None:
        validate(self)


def _is_cgroup_name(value: str) -> bool:
    parts = value.split("/")
    return not value.startswith("/") and all(p not in ("", ".", "..") for p in parts)


@dataclass(frozen=True, slots=True)
class CgroupSettings:
    """root: where the cgroup hierarchies are mounted; parent: our cgroup below it (per
    controller on v1); parent_cpu_weight: that parent's CPU weight (v2 scale), which all
    governed jobs share against its siblings; version: which cgroup version to use, auto to
    detect it."""

    root: Path = setting(
        "root",
        DIRECTORY,
        default=defaults.CGROUP_ROOT,
        flag=Flag("--cgroup-root", f"Where cgroups are mounted (default {defaults.CGROUP_ROOT})."),
    )
    parent: str = setting(
        "parent",
        text(_is_cgroup_name, "a cgroup name relative to the cgroup root, such as 'ffrtmp'"),
        default=defaults.CGROUP_PARENT_NAME,
        flag=Flag(
            "--cgroup-parent",
            "Cgroup for the job cgroups: relative to the daemon's own cgroup, or absolute from "
            "the root (default: ffrtmp below the daemon's own).",
        ),
    )
    parent_cpu_weight: int = setting(
        "parent_cpu_weight",
        whole_number(MIN_CPU_WEIGHT, MAX_CPU_WEIGHT),
        default=defaults.CGROUP_PARENT_CPU_WEIGHT,
        flag=Flag(
            "--cgroup-parent-cpu-weight",
            "CPU weight of the parent cgroup against its siblings, 1-10000 (v1: shares = "
            f"weight x 10.24; default {defaults.CGROUP_PARENT_CPU_WEIGHT}); written only to a "
            "parent ffrtmp created.",
        ),
    )
    version: str = setting(
        "version",
        choice(CGROUP_VERSIONS),
        default=defaults.CGROUP_VERSION,
        flag=Flag("--cgroup-version", "Override the detected cgroup version."),
    )

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True)
class ShipSettings:
    """How this node ships its history to the fleet's central database (`watch --ship-to`,
    `ffrtmp ship`; docs/fleet.md). The central URL is no setting: a password could sit in
    it, and the effective configuration is logged and stored."""

    node_label: str | None = setting(
        "node_label",
        optional(replace(text(bool, "a node name"), describe="NAME")),
        default=None,
        flag=Flag("--node-label", "This node's name in the fleet (default: the hostname)."),
    )
    interval: float = setting(
        "interval",
        duration(at_least=defaults.SHIP_MIN_INTERVAL_SECONDS),
        default=defaults.SHIP_INTERVAL_SECONDS,
        flag=Flag(
            "--ship-interval",
            f"Ship every DURATION when running on (500ms, 10s, 1m30s; default "
            f"{defaults.SHIP_INTERVAL_SECONDS:g}s).",
        ),
    )
    batch_size: int = setting(
        "batch_size",
        whole_number(1),
        default=defaults.SHIP_BATCH_SIZE,
        flag=Flag(
            "--ship-batch-size",
            f"Changed rows per central transaction (default {defaults.SHIP_BATCH_SIZE}).",
            aliases=("--batch-size",),
        ),
    )

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """The whole configuration of `ffrtmp watch`; WatchConfig() is the built-in defaults."""

    scan_interval: float = setting(
        "scan_interval",
        duration(),
        default=defaults.SCAN_INTERVAL_SECONDS,
        flag=Flag(
            "--scan-interval",
            f"Full scan every DURATION (500ms, 10s, 1m30s; default "
            f"{defaults.SCAN_INTERVAL_SECONDS:g}s).",
            original_envvar="SCAN_INTERVAL",
        ),
    )
    target_commands: tuple[str, ...] = setting(
        "target_commands",
        list_of(COMMAND_NAME, repeats="refuse"),
        default=defaults.TARGET_COMMANDS,
        flag=Flag(
            "--target",
            "Target command name (repeatable, or comma-separated); replaces the configured list.",
            param="target_commands",
            original_envvar="TARGET_COMMANDS",
        ),
    )
    discovery: str = setting(
        "discovery",
        choice(DISCOVERY_MODES),
        default=defaults.DISCOVERY_MODE,
        flag=Flag(
            "--discovery",
            "events: the kernel's process events; poll: scans only; auto (default): events "
            "when they work.",
        ),
    )
    usage_interval: float = setting(
        "usage_interval",
        duration(allow_zero=True),
        default=defaults.USAGE_INTERVAL_SECONDS,
        flag=Flag(
            "--usage-interval",
            f"Read governed jobs' CPU and memory usage every DURATION and store it on their "
            f"rows (default {defaults.USAGE_INTERVAL_SECONDS:g}s; 0 turns it off).",
        ),
    )
    default_limits: Limits = section("default_limits", Limits)
    filters: Filters = section("filters", Filters)
    commands: Mapping[str, CommandConfig] = section(
        "commands", CommandConfig, named=True, default_factory=lambda: MappingProxyType({})
    )
    retry: RetrySettings = section("retry", RetrySettings)
    health: HealthSettings = section("health", HealthSettings)
    retention_s: float = setting("retention", duration(), default=defaults.RETENTION_SECONDS)
    cgroup: CgroupSettings = section("cgroup", CgroupSettings)
    ship: ShipSettings = section("ship", ShipSettings)
    source: Path | None = None  # the file it was read from; None for defaults only
    # What the file spells the original daemon's way; not part of the configuration's value.
    notices: tuple[Notice, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        validate(self)
        if not self.target_commands:
            raise InvalidSetting("target_commands", "must name at least one command")
        commands = {
            name: command if command.filters is not None else replace(command, filters=self.filters)
            for name, command in self.commands.items()
        }
        object.__setattr__(self, "commands", MappingProxyType(commands))

    def warnings(self) -> list[str]:
        """One line per key the file spells the original daemon's way."""
        return [notice.warning(self.source) for notice in self.notices if notice.warn]

    def rules(self) -> list[MatchRule]:
        """One match rule per target command, named after it, with the command's extra
        `match` criteria when it has any."""
        rules = []
        for name in self.target_commands:
            command = self.commands.get(name)
            match = command.match if command else MatchCriteria()
            rules.append(
                MatchRule(name=name, command=name, exe=match.exe, cmdline_regex=match.cmdline_regex)
            )
        return rules

    def limits_for(self, rule_name: str) -> Limits:
        """The limits of the command's own section, else default_limits."""
        command = self.commands.get(rule_name)
        return command.limits if command else self.default_limits

    def filters_for(self, rule_name: str) -> Filters:
        """The command's filters (the global ones with its own keys applied), else the global
        filters."""
        command = self.commands.get(rule_name)
        if command is not None and command.filters is not None:
            return command.filters
        return self.filters

    def evaluate(self, candidate: Candidate, since_boot: float) -> Verdict:
        """The filters of the candidate's rule applied to it; `since_boot` is the moment on
        the boot-time clock (see Filters.evaluate)."""
        return self.filters_for(candidate.rule).evaluate(candidate, since_boot)
