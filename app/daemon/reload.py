"""SIGHUP: a new configuration from the same file. A bad file keeps the old one. Every key that
can change in a running daemon does; `discovery`, `cgroup` and `ship` need a restart, and a line
says so for each that changed. A reload that governs less (a limit gone or raised, a target
dropped) is said at WARNING and kept as an error event of operation `reload`: a file cut short
mid-write is often still valid YAML."""

from __future__ import annotations

import dataclasses
import logging

from ffrtmp.clock import Moment
from ffrtmp.daemon.errors import STORE_ERRORS, LoopErrors
from ffrtmp.store import Store
from ffrtmp.utctime import utc

log = logging.getLogger("ffrtmp.daemon")

# Keys a running daemon cannot change: its discovery socket and its cgroups are set up once.
RESTART_ONLY_KEYS = ("discovery", "cgroup", "ship")


def reloaded_config(old, overrides: dict, store: Store, errors: LoopErrors, now: Moment):
    """The configuration the file now gives, with the command line's flags over it and the
    restart-only keys as they are; None when there is no file or it is refused."""
    source = getattr(old, "source", None)
    if source is None:
        log.info("SIGHUP: no --watch-config file to reload")
        return None
    from ffrtmp.config import ConfigError, apply_overrides, changed_keys, load_config, loosened
    from ffrtmp.logs import readable

    try:
        fresh = apply_overrides(load_config(source), **overrides)
    except ConfigError as exc:
        log.error("reload refused, keeping the running configuration: %s", exc)
        errors.record("config", exc, now)
        return None
    for line in fresh.warnings():
        log.warning("%s", line)
    changes = changed_keys(old, fresh)
    for key, (before, after) in changes.items():
        before, after = readable(before), readable(after)
        if key.split(".")[0] in RESTART_ONLY_KEYS:
            log.warning(
                "reload: %s stays %s until a restart (the file now says %s)", key, before, after
            )
        else:
            log.info("reload: %s: %s -> %s", key, before, after)
    _record_loosened(store, loosened(changes), source, now)
    return dataclasses.replace(fresh, discovery=old.discovery, cgroup=old.cgroup, ship=old.ship)


def _record_loosened(store: Store, changes: dict, source: object, now: Moment) -> None:
    if not changes:
        return
    from ffrtmp.errors import Classification
    from ffrtmp.states import ErrorType

    listed = "; ".join(f"{key}: {before} -> {after}" for key, (before, after) in changes.items())
    message = f"the reload of {source} removed or loosened limits: {listed}"
    log.warning("%s (replace the file atomically: write a new one, then rename it)", message)
    event = Classification(ErrorType.PERMANENT, False, None, None, "LimitsLoosened", message)
    try:
        store.record_error("reload", event, now=utc(now.wall))
    except STORE_ERRORS as exc:
        log.error("could not record the loosened limits: %s", exc)
