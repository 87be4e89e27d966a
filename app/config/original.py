"""The original daemon's spellings of the watch config: its top-level keys, read as the keys
they meant (each with a Notice: one warning at load, one comment in `ffrtmp config migrate`),
and its state-file keys, dropped."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import NoReturn

import yaml

from ffrtmp.config.nodes import NULL_TAG, STR_TAG, scalar_key


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


def translate_legacy(
    root: yaml.Node, fail: Callable[[yaml.Node, str], NoReturn]
) -> tuple[yaml.Node, list[Notice]]:
    """The document with the original daemon's top-level keys (LEGACY_KEYS) moved to the
    sections they meant, or dropped; and a Notice for each. The moved key keeps its line, so
    what is wrong with its value is reported where it is written; `fail(node, message)`
    raises the reader's error at a node's line."""
    if not isinstance(root, yaml.MappingNode):
        return root, []
    kept: list[tuple[yaml.Node, yaml.Node]] = []
    moved: dict[str, list[tuple[yaml.Node, yaml.Node, str]]] = {}
    notices = []
    for key_node, value_node in root.value:
        key = scalar_key(key_node)
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
        at = next((i for i, (k, _) in enumerate(kept) if scalar_key(k) == section_key), None)
        if at is None:
            mark = items[0][0].start_mark
            kept.append((yaml.ScalarNode(STR_TAG, section_key, mark, mark), None))
            at = len(kept) - 1
            pairs = []
        else:
            node = kept[at][1]
            if isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG:
                pairs = []
            elif isinstance(node, yaml.MappingNode):
                pairs = list(node.value)
            else:
                continue  # reading the section reports that it is not a mapping
        for key_node, value_node, inner in items:
            clash = next((k for k, _ in pairs if scalar_key(k) == inner), None)
            if clash is not None:
                fail(
                    key_node,
                    f"{key_node.value!r} and {section_key}.{inner} (line "
                    f"{clash.start_mark.line + 1}) both set {section_key}.{inner}: keep only "
                    f"{section_key}.{inner}",
                )
            renamed = yaml.ScalarNode(STR_TAG, inner, key_node.start_mark, key_node.end_mark)
            pairs.append((renamed, value_node))
        key_node = kept[at][0]
        section = yaml.MappingNode(
            "tag:yaml.org,2002:map", pairs, key_node.start_mark, key_node.end_mark
        )
        kept[at] = (key_node, section)
    translated = yaml.MappingNode(root.tag, kept, root.start_mark, root.end_mark)
    return translated, notices
