"""`ffrtmp config migrate`: a watch config file rewritten in ffrtmp's own form.

The output keeps every key the file sets, with the value ffrtmp reads from it (so loading the
output gives the same effective configuration as loading the file), writes the original
daemon's spellings as the keys they meant, drops its state-file keys, and says in comments
what now means something else than the original daemon made of it. Keys the file leaves out
stay out: they keep their defaults either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ffrtmp.config import (
    STATE_IN_DATABASE,
    WatchConfig,
    effective_dict,
    given_keys,
    load_config,
)


def _keep_given(effective: Any, given: dict[str, Any] | None) -> Any:
    """The parts of `effective` (plain data) at the keys in `given`."""
    if given is None or not isinstance(effective, dict):
        return effective
    return {
        key: _keep_given(value, given[key])
        for key, value in effective.items()
        if key in given and not (isinstance(value, dict) and given[key] == {})
    }


def changes(config: WatchConfig) -> list[str]:
    """What ffrtmp reads differently from what the original daemon made of the file, one
    sentence each."""
    found = []
    for notice in config.notices:
        if not notice.warn:
            found.append(f"line {notice.line}: {notice.message}")
        elif notice.instead is None:
            found.append(f"line {notice.line}: {notice.key} dropped: {STATE_IN_DATABASE}")
        else:
            found.append(
                f"line {notice.line}: top-level {notice.key} is written {notice.instead}; the "
                "original daemon ignored it, ffrtmp applies it"
            )
    return found


def migrated_text(path: str | Path) -> str:
    """The file at `path` in ffrtmp's form, with a header of comments; ConfigError when
    ffrtmp cannot read it."""
    config = load_config(path)
    given = given_keys(path)
    body = _keep_given(effective_dict(config), given)
    lines = [
        f"# ffrtmp watch configuration, migrated from {path} by `ffrtmp config migrate`.",
        "# Same settings as that file; check it with `ffrtmp config check FILE`.",
        "# Durations are written 10s, 1m30s; no limit is written `unlimited`.",
    ]
    noted = changes(config)
    if noted:
        lines.append("# What changed meaning:")
        lines.extend(f"#   - {sentence}" for sentence in noted)
    text = yaml.safe_dump(body, sort_keys=False, default_flow_style=False) if body else ""
    return "\n".join(lines) + "\n" + text
