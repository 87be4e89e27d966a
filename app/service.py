"""Assembling a daemon from a configuration: database, governor, scanner, event source."""

from __future__ import annotations

import logging
import os

from ffrtmp.config import WatchConfig, effective_dict
from ffrtmp.daemon import Daemon, default_notifier

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The daemon cannot start; the message is one sentence for the operator."""


def open_store(db: str | None):
    from ffrtmp.database import DatabaseError, open_for_writing
    from ffrtmp.revisions import RevisionsError
    from ffrtmp.store import Store

    try:
        return Store(open_for_writing(db))
    except (DatabaseError, RevisionsError) as exc:
        raise StartupError(str(exc)) from None


def make_governor(config: WatchConfig):
    from ffrtmp.cgroups import create_governor

    version = {"v1": 1, "v2": 2}.get(config.cgroup.version)
    return create_governor(root=config.cgroup.root, parent=config.cgroup.parent, version=version)


def choose_discovery(mode: str):
    """(mode actually used, listener or None), logging the choice once."""
    if mode == "poll":
        log.info("discovery: poll (full scans only)")
        return "poll", None
    from ffrtmp.proc_events import ProcEventListener, unavailable_reason

    try:
        listener = ProcEventListener().open()
    except OSError as exc:
        problem = unavailable_reason(exc)
        if mode == "events":
            raise StartupError(f"--discovery events is not possible here: {problem}") from None
        log.warning(
            "discovery: poll, because the kernel's process events are unavailable: %s", problem
        )
        return "poll", None
    log.info("discovery: events (kernel process-events connector), with full scans as well")
    return "events", listener


def build_daemon(
    config: WatchConfig, *, db: str | None, once: bool = False, http_address: str | None = None
) -> Daemon:
    from ffrtmp.scanner import Scanner

    # Every refusal comes before the database is touched: a daemon that cannot start
    # leaves no file behind.
    if http_address:
        from ffrtmp.http import parse_address

        try:
            parse_address(http_address)
        except ValueError as exc:
            raise StartupError(f"--http {http_address}: {exc}") from None
    mode, listener = choose_discovery(config.discovery)
    try:
        store = open_store(db)
    except StartupError:
        if listener is not None:
            listener.close()
        raise
    governor = make_governor(config)
    scanner = Scanner(config.rules(), self_pid=os.getpid())
    daemon = Daemon(
        config,
        store,
        governor,
        scanner,
        listener=listener,
        discovery=mode,
        once=once,
        config_summary=effective_dict(config),
        notifier=default_notifier(),
    )
    if http_address:
        from ffrtmp.http import start_http_server

        try:
            daemon.http_server = start_http_server(http_address, daemon)
        except (ValueError, OSError) as exc:
            daemon.store.close()
            if listener is not None:
                listener.close()
            raise StartupError(f"--http {http_address}: {exc}") from None
    return daemon
