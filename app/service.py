"""Assembling a daemon from a configuration: database, governor, scanner, event source."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from ffrtmp.config import WatchConfig, effective_dict
from ffrtmp.daemon import Daemon, default_notifier

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The daemon cannot start; the message is one sentence for the operator."""

    exit_code = 1


class AlreadyRunning(StartupError):
    """Another daemon runs on the same database (ffrtmp.daemon_lock)."""

    exit_code = 2


def lock_database(location):
    """The daemon lock of a database file, taken before anything is written; None for a
    database that is not a file (a URL of another dialect, or SQLite in memory)."""
    from ffrtmp import daemon_lock

    if location.path is None:
        return None
    try:
        return daemon_lock.DaemonLock.acquire(location.path)
    except daemon_lock.AlreadyRunning as exc:
        raise AlreadyRunning(str(exc)) from None
    except OSError as exc:
        lock_file = daemon_lock.lock_path(location.path)
        raise StartupError(f"lock file {lock_file} cannot be opened: {exc.strerror}") from None


def open_store(db):
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
    return create_governor(
        root=config.cgroup.root,
        parent=config.cgroup.parent,
        version=version,
        parent_cpu_weight=config.cgroup.parent_cpu_weight,
    )


@dataclass
class Discovery:
    mode: str  # the mode actually used: "events" or "poll"
    listener: object | None
    choice: tuple[int, str]  # the log level and line that tell the operator why

    def announce(self) -> None:
        log.log(*self.choice)

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()


def choose_discovery(mode: str) -> Discovery:
    """The event source for `mode`; the choice is logged by announce(), once the daemon is
    sure to start, so a refusal stays the only line a refused start prints."""
    if mode == "poll":
        return Discovery("poll", None, (logging.INFO, "discovery: poll (full scans only)"))
    from ffrtmp.proc_events import ProcEventListener, unavailable_reason

    try:
        listener = ProcEventListener().open()
    except OSError as exc:
        problem = unavailable_reason(exc)
        if mode == "events":
            raise StartupError(f"--discovery events is not possible here: {problem}") from None
        why = f"discovery: poll, because the kernel's process events are unavailable: {problem}"
        return Discovery("poll", None, (logging.WARNING, why))
    # Logged by the daemon rather than by open(): a refused start must print nothing else.
    buffer = listener.receive_buffer_granted
    return Discovery(
        "events",
        listener,
        (
            logging.INFO,
            "discovery: events (kernel process-events connector, receive buffer "
            f"{buffer} bytes), with full scans as well",
        ),
    )


def _describe_location(location) -> str:
    """The database for the ready line: its file, or its URL without the password."""
    if location.path is not None:
        return str(location.path)
    from sqlalchemy.engine import make_url

    return make_url(location.url).render_as_string(hide_password=True)


def build_daemon(
    config: WatchConfig,
    *,
    db: str | None,
    once: bool = False,
    http_address: str | None = None,
    allow_unsafe_db: bool = False,
    overrides: dict | None = None,
) -> Daemon:
    """`overrides`: the command line's flags, applied again over the file at every reload."""
    from ffrtmp.database import DatabaseError, refuse_unsafe_file, resolve
    from ffrtmp.scanner import Scanner

    # Every refusal comes before the database is touched: a daemon that cannot start
    # leaves no file behind, and one that finds another daemon on its database writes nothing.
    if http_address:
        from ffrtmp.http import parse_address, unix_socket_path

        try:
            if unix_socket_path(http_address) is None:
                parse_address(http_address)
        except ValueError as exc:
            raise StartupError(f"--http {http_address}: {exc}") from None
    location = resolve(db)
    if location.path is not None and not allow_unsafe_db:
        try:
            refuse_unsafe_file(location.path)
        except DatabaseError as exc:
            raise StartupError(str(exc)) from None
    discovery = choose_discovery(config.discovery)
    try:
        lock = lock_database(location)
    except StartupError:
        discovery.close()
        raise
    try:
        discovery.announce()
        store = open_store(location)
    except StartupError:
        discovery.close()
        if lock is not None:
            lock.release()
        raise
    governor = make_governor(config)
    scanner = Scanner(config.rules(), self_pid=os.getpid())
    return Daemon(
        config,
        store,
        governor,
        scanner,
        listener=discovery.listener,
        discovery=discovery.mode,
        once=once,
        config_summary=effective_dict(config),
        notifier=default_notifier(),
        daemon_lock=lock,
        overrides=overrides,
        http_address=http_address,
        database_description=_describe_location(location),
    )
