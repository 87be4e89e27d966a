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
    ship: {node_label, interval: 5s, batch_size: 20000}   # watch --ship-to, ffrtmp ship

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

One module per concern: `sections` (the settings classes, WatchConfig), `reader` (the YAML
file), `original` (the original daemon's spellings), `overrides` (the flags, the effective
configuration and what differs between two). Every public name is importable from here.
"""

from ffrtmp.config.original import LEGACY_KEYS, STATE_IN_DATABASE, Notice
from ffrtmp.config.overrides import (
    apply_overrides,
    changed_keys,
    effective_dict,
    flags,
    loosened,
    overridden,
)
from ffrtmp.config.reader import MAX_CONFIG_BYTES, MAX_NESTING, given_keys, load_config
from ffrtmp.config.sections import (
    CGROUP_VERSIONS,
    DISCOVERY_MODES,
    CgroupSettings,
    CommandConfig,
    ConfigError,
    HealthSettings,
    MatchCriteria,
    RetrySettings,
    ShipSettings,
    WatchConfig,
)

__all__ = [
    "CGROUP_VERSIONS",
    "DISCOVERY_MODES",
    "LEGACY_KEYS",
    "MAX_CONFIG_BYTES",
    "MAX_NESTING",
    "STATE_IN_DATABASE",
    "CgroupSettings",
    "CommandConfig",
    "ConfigError",
    "HealthSettings",
    "MatchCriteria",
    "Notice",
    "RetrySettings",
    "ShipSettings",
    "WatchConfig",
    "apply_overrides",
    "changed_keys",
    "effective_dict",
    "flags",
    "given_keys",
    "load_config",
    "loosened",
    "overridden",
]
