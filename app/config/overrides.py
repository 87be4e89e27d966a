"""The command-line flags over a watch configuration, and the configuration printed back: the
effective configuration (every default filled in, itself a valid file), and what differs
between two of them (a reload's `key: old -> new`, and which of those govern less)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from ffrtmp.config.sections import ConfigError, WatchConfig
from ffrtmp.settings import UNLIMITED, Flag, Invalid, InvalidSetting, Setting, declared


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
