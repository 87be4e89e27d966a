"""The watch configuration: the YAML file, the flags that override it, and the effective
configuration printed back.

Precedence, lowest first: the built-in defaults (ffrtmp.defaults) < the config file < command-line
flags (`apply_overrides`). A key the file leaves out keeps its default; a flag that is given
wins over the file.

Every key is declared once, as a field of a settings class (`ffrtmp.settings`): its name in the
file, its kind, its default, its flag. The value classes check their own values (`Limits`,
`BackoffPolicy`, `HealthThresholds`, `Filters`, the sections below); this module only walks
the file, applies the flags and prints, and adds the file, line and key to their message.

The file (every key optional; deploy/watch-config.yaml shows them all):

    scan_interval: 10s                 # durations: 500ms, 10s, 1m30s, 2h, 7d or plain seconds
    target_commands: [ffmpeg, gst-launch-1.0]
    discovery: auto                    # events | poll | auto
    usage_interval: 10s                # read running jobs' cgroup usage; 0 turns it off
    default_limits: {cpu_quota: 150, cpu_weight: 100, memory_limit: 2048}
    filters: {allowed_users, blocked_users, allowed_uids, blocked_uids, allowed_parents,
              blocked_parents, min_runtime, max_runtime, allowed_dirs, blocked_dirs}
    commands:
      ffmpeg:
        limits: {...}                  # only the keys given; the rest come from default_limits
        filters: {...}                 # only the keys given; the rest come from filters
        match: {exe: /usr/bin/ffmpeg, cmdline_regex: "-f flv"}   # extra criteria for its rule
    retry: {enabled, max_attempts, initial_delay, multiplier, max_delay, jitter}
    health: {degraded_scan_failures, degraded_attach_failures, unhealthy_scan_failures,
             stale_scan_after, snapshot_interval}
    retention: 30d
    cgroup: {root: /sys/fs/cgroup, parent: ffrtmp, parent_cpu_weight: 1000,
             version: auto}            # auto | v1 | v2

Decisions worth knowing:
- A command listed under `commands` is a target even when `target_commands` does not list it:
  whoever wrote limits for it wants it governed. It is appended after the listed targets. The
  `--target` flag, given last, is the complete list and does not get this addition.
- Unknown keys anywhere, duplicate keys and values of the wrong type are errors that name the
  file, the line and the key (ConfigError); nothing is silently ignored.
- An empty section (`filters:` with nothing under it) or an empty list means "nothing set".
- "No limit" is written `unlimited` (also read: null, 0 for cpu_quota and memory_limit, and an
  empty string, the original daemon's `max_runtime: ""`); an empty min_runtime is 0s.
- A command's `filters` are merged key by key over the global `filters`, as its `limits` are
  over `default_limits`: the effective configuration lists every command's whole filters.
- The original daemon's top-level spellings (`cpu_quota`, `enable_retry`, `state_path`, …;
  LEGACY_KEYS) are read as the keys they meant, each with one warning (a Notice on the
  configuration) naming the key to write instead; `ffrtmp config migrate` rewrites a file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import yaml

from ffrtmp import defaults
from ffrtmp.backoff import BackoffPolicy
from ffrtmp.candidate import Candidate
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
    UNLIMITED,
    Flag,
    Invalid,
    InvalidSetting,
    Setting,
    choice,
    declared,
    duration,
    list_of,
    optional,
    section,
    setting,
    show,
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
class Notice:
    """A key of a file that ffrtmp reads other than as written: one warning when the file is
    loaded, one comment in `ffrtmp config migrate`. `instead`: the key to write in its place
    (dotted), None when the key can simply be dropped."""

    line: int
    key: str
    instead: str | None
    message: str
    warn: bool = True  # False: a comment for `config migrate` only, no warning at load

    def warning(self, source: Path | str | None) -> str:
        return f"{source}, line {self.line}: {self.message}"


# The original daemon's top-level keys -> the key each meant (dotted), or None for the keys of
# its state file: ffrtmp's state is its SQLite database, always. The original's configuration
# generator wrote these and the original itself ignored them, so its limits never applied.
LEGACY_KEYS: Mapping[str, str | None] = MappingProxyType(
    {
        "cpu_quota": "default_limits.cpu_quota",
        "cpu_weight": "default_limits.cpu_weight",
        "memory_limit": "default_limits.memory_limit",
        "enable_retry": "retry.enabled",
        "max_retry_attempts": "retry.max_attempts",
        "enable_state": None,
        "state_path": None,
        "state_flush_interval": None,
    }
)

STATE_IN_DATABASE = "ffrtmp keeps its state in its SQLite database (--db, FFRTMP_DB), always"


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


# --- reading the file -----------------------------------------------------------------------

_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"

_Entries = dict[str, tuple[yaml.Node, yaml.Node]]  # key -> (key node, value node)
_Path = tuple[str, ...]  # attribute names from a settings object down to one of its values


def _keys(cls: type) -> dict[str, tuple[_Path, Setting]]:
    """The keys a section of class `cls` accepts, flattened sections' keys included."""
    table: dict[str, tuple[_Path, Setting]] = {}
    for f, s in declared(cls):
        if s.flatten:
            for key, (path, inner) in _keys(s.section).items():
                table[key] = ((f.name, *path), inner)
        else:
            table[s.key] = ((f.name,), s)
    return table


def _replace_along(obj: Any, changes: Mapping[_Path, Any]) -> Any:
    """`obj` with each change applied at its path (nested sections rebuilt, so validated)."""
    direct: dict[str, Any] = {}
    nested: dict[str, dict[_Path, Any]] = {}
    for path, value in changes.items():
        if len(path) == 1:
            direct[path[0]] = value
        else:
            nested.setdefault(path[0], {})[path[1:]] = value
    for name, inner in nested.items():
        direct[name] = _replace_along(getattr(obj, name), inner)
    return replace(obj, **direct) if direct else obj


class _Reader:
    """Walks the composed YAML nodes, so that every error can name its line."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._constructor = yaml.constructor.SafeConstructor()

    def fail(self, node: yaml.Node, message: str) -> NoReturn:
        raise ConfigError(f"{self.name}, line {node.start_mark.line + 1}: {message}")

    def plain(self, node: yaml.Node) -> Any:
        """The value of a node as plain data; a list's items each read alone, a mapping as an
        empty dict (no value kind takes one)."""
        if isinstance(node, yaml.SequenceNode):
            return [self.plain(item) for item in node.value]
        if isinstance(node, yaml.MappingNode):
            return {}
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError:
            self.fail(node, f"the value {show(node.value)} has a YAML tag ffrtmp does not read")
        except ValueError:  # int() refuses more than 4,300 digits
            self.fail(node, f"the number {show(node.value)} is far too large")

    def entries(self, node: yaml.Node, where: str, allowed: Mapping | None) -> _Entries:
        """The keys of a mapping node; `allowed` None accepts any name (command names)."""
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
            return {}
        if not isinstance(node, yaml.MappingNode):
            what = f"{where} must be a mapping" if where else "the file must be a mapping of keys"
            plain = [] if isinstance(node, yaml.SequenceNode) else self.plain(node)
            self.fail(node, f"{what}, not {show(plain)}")
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

    def blame(
        self, exc: InvalidSetting, where: str, entries: _Entries, node: yaml.Node
    ) -> NoReturn:
        """Fail at the line of the key the error names, or of any key given in the section."""
        prefix = f"{where}." if where else ""
        key_node, value_node = entries.get(exc.key) or next(iter(entries.values()), (node, node))
        at = key_node
        if (
            exc.key in entries
            and exc.index is not None
            and isinstance(value_node, yaml.SequenceNode)
        ):
            at = value_node.value[exc.index]
        self.fail(at, f"{prefix}{exc}")

    def section(self, node: yaml.Node, where: str, base: Any) -> Any:
        """`base` (a settings object) with the keys given in `node` applied."""
        table = _keys(type(base))
        entries = self.entries(node, where, table)
        return self.build(base, self.changes(entries, table, where, base), where, entries, node)

    def changes(
        self, entries: _Entries, table: Mapping[str, tuple[_Path, Setting]], where: str, base: Any
    ) -> dict[_Path, Any]:
        """What each given key sets, as plain data for the settings classes to check."""
        found: dict[_Path, Any] = {}
        for key, (_, value_node) in entries.items():
            path, s = table[key]
            inner_where = f"{where}.{key}" if where else key
            if s.named:
                found[path] = self.named_sections(value_node, inner_where, s.section())
            elif s.section is not None:
                current = _follow(base, path)
                found[path] = self.section(
                    value_node, inner_where, current if current is not None else s.section()
                )
            else:
                found[path] = self.plain(value_node)
        return found

    def build(
        self,
        base: Any,
        changes: Mapping[_Path, Any],
        where: str,
        entries: _Entries,
        node: yaml.Node,
    ) -> Any:
        try:
            return _replace_along(base, changes)
        except InvalidSetting as exc:
            self.blame(exc, where, entries, node)

    def named_sections(self, node: yaml.Node, where: str, base: Any) -> MappingProxyType:
        found = {}
        for name, (key_node, value_node) in self.entries(node, where, None).items():
            try:
                COMMAND_NAME.accept(name)
            except Invalid as exc:
                self.fail(key_node, f"{where} key {exc.predicate}")
            found[name] = self.section(value_node, f"{where}.{name}", base)
        return MappingProxyType(found)


def _follow(obj: Any, path: _Path) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


def _scalar_key(node: yaml.Node) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG else None


def _translate_legacy(reader: _Reader, root: yaml.Node) -> tuple[yaml.Node, list[Notice]]:
    """The document with the original daemon's top-level keys (LEGACY_KEYS) moved to the
    sections they meant, or dropped; and a Notice for each. The moved key keeps its line, so
    what is wrong with its value is reported where it is written."""
    if not isinstance(root, yaml.MappingNode):
        return root, []
    kept: list[tuple[yaml.Node, yaml.Node]] = []
    moved: dict[str, list[tuple[yaml.Node, yaml.Node, str]]] = {}
    notices = []
    for key_node, value_node in root.value:
        key = _scalar_key(key_node)
        if key not in LEGACY_KEYS:
            kept.append((key_node, value_node))
            continue
        line = key_node.start_mark.line + 1
        instead = LEGACY_KEYS[key]
        if instead is None:
            notices.append(
                Notice(line, key, None, f"{key!r} is not read: {STATE_IN_DATABASE}; drop it")
            )
            continue
        section_key, inner = instead.split(".")
        moved.setdefault(section_key, []).append((key_node, value_node, inner))
        notices.append(
            Notice(
                line,
                key,
                instead,
                f"{key!r} is the original daemon's spelling, read as {instead}: write {instead} "
                "instead (the original ignored this key, so this setting now applies)",
            )
        )
    for section_key, items in moved.items():
        at = next((i for i, (k, _) in enumerate(kept) if _scalar_key(k) == section_key), None)
        if at is None:
            mark = items[0][0].start_mark
            kept.append((yaml.ScalarNode(_STR_TAG, section_key, mark, mark), None))
            at = len(kept) - 1
            pairs = []
        else:
            node = kept[at][1]
            if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
                pairs = []
            elif isinstance(node, yaml.MappingNode):
                pairs = list(node.value)
            else:
                continue  # reading the section reports that it is not a mapping
        for key_node, value_node, inner in items:
            clash = next((k for k, _ in pairs if _scalar_key(k) == inner), None)
            if clash is not None:
                reader.fail(
                    key_node,
                    f"{key_node.value!r} and {section_key}.{inner} (line "
                    f"{clash.start_mark.line + 1}) both set {section_key}.{inner}: keep only "
                    f"{section_key}.{inner}",
                )
            renamed = yaml.ScalarNode(_STR_TAG, inner, key_node.start_mark, key_node.end_mark)
            pairs.append((renamed, value_node))
        key_node = kept[at][0]
        section = yaml.MappingNode(
            "tag:yaml.org,2002:map", pairs, key_node.start_mark, key_node.end_mark
        )
        kept[at] = (key_node, section)
    translated = yaml.MappingNode(root.tag, kept, root.start_mark, root.end_mark)
    return translated, notices


def _read_document(reader: _Reader, root: yaml.Node | None, source: Path) -> WatchConfig:
    if root is None:  # an empty file: every default
        return WatchConfig(source=source)
    root, notices = _translate_legacy(reader, root)
    base = WatchConfig(source=source, notices=tuple(notices))
    table = _keys(WatchConfig)
    top = reader.entries(root, "", table)
    # A command's limits are the file's default_limits with its own keys applied, and its
    # filters the file's filters with its own keys applied.
    default_limits = Limits()
    if "default_limits" in top:
        default_limits = reader.section(top["default_limits"][1], "default_limits", Limits())
    global_filters = Filters()
    if "filters" in top:
        global_filters = reader.section(top["filters"][1], "filters", Filters())
    merged = ("default_limits", "filters", "commands")
    others = {key: nodes for key, nodes in top.items() if key not in merged}
    changes = reader.changes(others, table, "", base)
    changes[("default_limits",)] = default_limits
    changes[("filters",)] = global_filters
    if "commands" in top:
        commands = reader.named_sections(
            top["commands"][1],
            "commands",
            CommandConfig(limits=default_limits, filters=global_filters),
        )
        changes[("commands",)] = commands
        # A command that has a section of its own is a target even when target_commands does
        # not list it: whoever wrote limits for it wants it governed.
        targets = changes.get(("target_commands",), base.target_commands)
        if isinstance(targets, list | tuple):
            extra = [name for name in commands if name not in targets]
            changes[("target_commands",)] = [*targets, *extra]
            if "target_commands" in top and extra:
                line = top["target_commands"][0].start_mark.line + 1
                added = ", ".join(extra)
                message = (
                    f"target_commands also holds {added}: a command with a section under "
                    "commands is governed even when target_commands does not list it"
                )
                notices.append(Notice(line, "target_commands", None, message, warn=False))
                base = replace(base, notices=tuple(notices))
    return reader.build(base, changes, "", top, root)


# A config file is a few kilobytes; anything past this is not one (and would take seconds to
# parse on every start and reload).
MAX_CONFIG_BYTES = 1 << 20
# Sections nest four deep (commands.ffmpeg.limits.memory_limit); YAML's composer recurses
# once per level and a file of 5,000 "[" would exhaust Python's stack.
MAX_NESTING = 32


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses nesting deeper than MAX_NESTING, before it recurses that deep."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                mark = self.peek_event().start_mark
                raise yaml.MarkedYAMLError(
                    problem=f"it nests deeper than {MAX_NESTING} levels", problem_mark=mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _read_text(path: str | Path, name: str) -> str:
    """The file's text: a regular file of at most MAX_CONFIG_BYTES, in UTF-8. Opened without
    blocking, so that a FIFO or a device is refused rather than waited on or read forever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"{name} cannot be read: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{name} cannot be read: Is a directory")
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{name} cannot be read: it is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{name} cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{name} is larger than {MAX_CONFIG_BYTES // 1024} KiB: not a config file"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{name} cannot be read: it is not UTF-8 text") from None


def load_config(path: str | Path | None) -> WatchConfig:
    """The configuration in the YAML file at `path` over the built-in defaults; None gives the
    defaults alone. Raises ConfigError with one sentence naming the file, line and key. Keys
    spelt the original daemon's way are read as they meant; `WatchConfig.warnings()` says
    which."""
    if path is None:
        return WatchConfig()
    reader, root = _compose(path)
    return _read_document(reader, root, Path(path))


def given_keys(path: str | Path) -> dict[str, Any]:
    """The keys the file at `path` sets, as a tree (a key that holds a value maps to None),
    with the original daemon's spellings already moved to the keys they meant."""
    reader, root = _compose(path)
    if root is None:
        return {}
    root, _ = _translate_legacy(reader, root)

    def tree(node: yaml.Node) -> dict[str, Any] | None:
        if not isinstance(node, yaml.MappingNode):
            return None
        return {k.value: tree(v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}

    return tree(root) or {}


def _compose(path: str | Path) -> tuple[_Reader, yaml.Node | None]:
    """The file's YAML as nodes (which know their lines), or ConfigError."""
    name = str(path)
    text_ = _read_text(path, name)
    try:
        root = yaml.compose(text_, Loader=_BoundedLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = ", ".join(filter(None, (exc.context, exc.problem))) or "it cannot be parsed"
        raise ConfigError(f"{name}{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: invalid YAML: {exc}") from None
    return _Reader(name), root


# --- command-line flags ---------------------------------------------------------------------


def flags(cls: type = WatchConfig) -> list[tuple[Flag, Setting]]:
    """Every flag that overrides a setting of `cls` or of its sections, each once."""
    found: dict[str, tuple[Flag, Setting]] = {}
    for _, s in declared(cls):
        if s.section is not None:
            for flag, inner in flags(s.section):
                found.setdefault(flag.param_name, (flag, inner))
        elif s.flag is not None:
            found.setdefault(s.flag.param_name, (s.flag, s))
    return list(found.values())


def _not_given(value: Any) -> bool:
    return value is None or isinstance(value, list | tuple) and not value


def overridden(obj: Any, given: Mapping[str, Any]) -> Any:
    """The settings object `obj` with the flags in `given` (by parameter name) applied, in it
    and in its sections; raises ConfigError naming the flag."""
    changes: dict[str, Any] = {}
    named_flags: dict[str, Flag] = {}
    for f, s in declared(obj):
        value = getattr(obj, f.name)
        if s.named:
            changes[f.name] = MappingProxyType(
                {name: overridden(inner, given) for name, inner in value.items()}
            )
        elif s.section is not None:
            if value is not None:
                changes[f.name] = overridden(value, given)
        elif s.flag is not None and s.flag.param_name in given:
            named_flags[s.key] = s.flag
            try:
                changes[f.name] = s.kind.accept_text(given[s.flag.param_name])
            except Invalid as exc:
                raise ConfigError(f"{s.flag.name} {exc.predicate}") from None
    try:
        return replace(obj, **changes)
    except InvalidSetting as exc:
        flag = named_flags.get(exc.key)
        if flag is None:
            raise ConfigError(f"after the flags, {exc}") from None
        raise ConfigError(f"{flag.name} {exc.predicate}") from None


def apply_overrides(config: WatchConfig, **given: Any) -> WatchConfig:
    """`config` with the command-line flags that were given applied over it, keyed by each
    flag's parameter name (`flags()`).

    None (or an empty list) means the flag was not given and the file or default stands. A
    limit flag (--cpu-quota, --cpu-weight, --memory-limit) overrides that limit everywhere: in
    default_limits and in every command's own limits, because the operator typed it last;
    limits the flags do not name keep their per-command values. --target is the complete list
    of targets: commands configured in the file but not named by it keep their settings yet
    are not watched. Bad values raise ConfigError naming the flag.
    """
    known = {flag.param_name for flag, _ in flags()}
    unknown = sorted(set(given) - known)
    if unknown:
        raise TypeError(f"apply_overrides() got unknown flags: {', '.join(unknown)}")
    given = {name: value for name, value in given.items() if not _not_given(value)}
    return overridden(config, given) if given else config


# --- printing -------------------------------------------------------------------------------


def _plain(obj: Any) -> dict:
    out: dict[str, Any] = {}
    for f, s in declared(obj):
        value = getattr(obj, f.name)
        if s.flatten:
            out.update(_plain(value))
        elif s.named:
            out[s.key] = {name: _plain(inner) for name, inner in value.items()}
        elif s.section is not None:
            if value is None:
                continue
            inner = _plain(value)
            if s.omit_empty:
                inner = {key: v for key, v in inner.items() if v is not None}
                if not inner:
                    continue
            out[s.key] = inner
        else:
            out[s.key] = s.kind.show(value)
    return out


def effective_dict(config: WatchConfig) -> dict:
    """The configuration as plain data in the file's own schema, every default filled in:
    for logging at start-up and for `ffrtmp config check`. Written out as YAML it is a valid
    config file that loads back to the same configuration."""
    return _plain(config)


def _leaves(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        found: dict[str, Any] = {}
        for key, value in data.items():
            found |= _leaves(value, f"{prefix}{key}.")
        return found
    return {prefix.rstrip("."): data}


def changed_keys(old: WatchConfig, new: WatchConfig) -> dict[str, tuple[Any, Any]]:
    """Each key (dotted, as in the file) whose effective value differs: (old, new)."""
    before, after = _leaves(effective_dict(old)), _leaves(effective_dict(new))
    return {
        key: (before.get(key), after.get(key))
        for key in dict.fromkeys([*before, *after])
        if before.get(key) != after.get(key)
    }


_LOOSER_WHEN_HIGHER = ("cpu_quota", "memory_limit", "cpu_weight")


def loosened(changes: Mapping[str, tuple[Any, Any]]) -> dict[str, tuple[Any, Any]]:
    """Of `changed_keys()`, those that govern less: a limit removed or raised, a larger CPU
    weight, a target command no longer listed. A config file cut short mid-write can still be
    valid YAML and do exactly this, so a reload says it loudly."""
    found = {}
    for key, (before, after) in changes.items():
        name = key.rsplit(".", 1)[-1]
        # The effective config shows no limit as "unlimited" (None in older records).
        if name in _LOOSER_WHEN_HIGHER and before not in (None, UNLIMITED):
            if after in (None, UNLIMITED) or (
                isinstance(after, int | float)
                and isinstance(before, int | float)
                and after > before
            ):
                found[key] = (before, after)
        elif key == "target_commands" and set(before or ()) - set(after or ()):
            found[key] = (before, after)
    return found
