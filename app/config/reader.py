"""The watch config file: read (a regular file of at most 1 MiB, in UTF-8, YAML nested at most
32 levels), composed into nodes that know their lines, and walked into the settings classes of
ffrtmp.config.sections, so that every error names the file, the line and the key.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import yaml

from ffrtmp.config.nodes import NULL_TAG, STR_TAG
from ffrtmp.config.original import Notice, translate_legacy
from ffrtmp.config.sections import CommandConfig, ConfigError, WatchConfig
from ffrtmp.filters import Filters
from ffrtmp.limits import Limits
from ffrtmp.settings import COMMAND_NAME, Invalid, InvalidSetting, Setting, declared, show

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
        if isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG:
            return {}
        if not isinstance(node, yaml.MappingNode):
            what = f"{where} must be a mapping" if where else "the file must be a mapping of keys"
            plain = [] if isinstance(node, yaml.SequenceNode) else self.plain(node)
            self.fail(node, f"{what}, not {show(plain)}")
        suffix = f" in {where}" if where else ""
        found: _Entries = {}
        for key_node, value_node in node.value:
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == STR_TAG):
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


def _read_document(reader: _Reader, root: yaml.Node | None, source: Path) -> WatchConfig:
    if root is None:  # an empty file: every default
        return WatchConfig(source=source)
    root, notices = translate_legacy(root, reader.fail)
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
    root, _ = translate_legacy(root, reader.fail)

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
