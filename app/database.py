"""Where the database is, how to open it, and keeping its schema at the code's revision.

SQLite is opened with WAL (readers never block the writer), foreign keys on, a busy timeout,
synchronous=FULL (a committed retry item survives a power cut) and write transactions that
begin IMMEDIATE (a write that reads first takes the lock up front instead of failing later).
A writer's reads go through for_reading(engine): deferred, they neither take nor wait for the
write lock. A write that must be quick rather than synced at once goes through
unsynced_commits(engine) (see there).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError

from ffrtmp import defaults
from ffrtmp.revisions import head_revision, known_revisions

log = logging.getLogger(__name__)

# What opening, reading or upgrading a database raises when the database is at fault (missing,
# locked, corrupt, refused by the server, a disk that fails), as opposed to a bug.
ACCESS_ERRORS = (SQLAlchemyError, sqlite3.Error, OSError)

SQLITE_HEADER = b"SQLite format 3\x00"

# Execution option of for_reading(): its transactions begin deferred on a writer's engine.
DEFERRED_BEGIN = "ffrtmp_deferred_begin"
# Execution option of unsynced_commits(): its write transactions commit with synchronous=NORMAL.
UNSYNCED_COMMIT = "ffrtmp_unsynced_commit"


ALLOW_UNSAFE_DB_FLAG = "--allow-unsafe-db"


class DatabaseError(Exception):
    """A database that cannot be used as asked; the message is one sentence for the operator."""


@dataclass(frozen=True)
class DatabaseLocation:
    url: str
    path: Path | None  # None for a non-file database (sqlite memory, another dialect)

    def __str__(self) -> str:
        if self.path is not None:
            return str(self.path)
        # A server's URL may carry a password: never in a message or a log line.
        return make_url(self.url).render_as_string(hide_password=True)

    def scrubbed(self, text: str) -> str:
        """`text` without the URL's password, should the driver's words quote it."""
        password = None if self.path is not None else make_url(self.url).password
        return text.replace(str(password), "***") if password else text


def resolve(db: str | os.PathLike | None = None) -> DatabaseLocation:
    """--db, else $FFRTMP_DB, else the default path: the CLI and the daemon resolve alike."""
    raw = str(db) if db else os.environ.get(defaults.DB_ENV_VAR) or str(defaults.default_db_path())
    if "://" in raw:
        url = make_url(raw)
        path = Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None
        if path is not None and str(path) == ":memory:":
            path = None
        return DatabaseLocation(raw, path)
    path = Path(raw).expanduser().absolute()
    return DatabaseLocation(f"sqlite:///{path}", path)


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise DatabaseError(f"database path {path} is a directory, not a database file")
    if path.exists() and path.stat().st_size > 0:
        try:
            with open(path, "rb") as f:
                header = f.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise DatabaseError(f"database {path} cannot be read: {exc.strerror}") from None
        if header != SQLITE_HEADER:
            raise DatabaseError(f"{path} is not an SQLite database")


def refuse_unsafe_file(path: Path) -> None:
    """Refuse (DatabaseError) the daemon's database file when another user could read or
    swap what it records: a symbolic link (whoever can change it chooses the file that is
    written), a file owned by another user, or one that other users may read or write (every
    process's argv is in it). A missing file is fine: it is created 0600."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise DatabaseError(f"database {path} cannot be examined: {exc.strerror}") from None
    escape = f"; {ALLOW_UNSAFE_DB_FLAG} uses it anyway"
    if stat.S_ISLNK(info.st_mode):
        raise DatabaseError(
            f"database {path} is a symbolic link; give the real file's path{escape}"
        )
    if info.st_uid != os.geteuid():
        raise DatabaseError(
            f"database {path} is owned by uid {info.st_uid}, not by uid {os.geteuid()} that "
            f"runs the daemon{escape}"
        )
    if info.st_mode & 0o026:
        raise DatabaseError(
            f"database {path} has mode {stat.S_IMODE(info.st_mode):04o}: other users can read "
            f"or write it (chmod 600 it){escape}"
        )


def _set_pragmas(dbapi_connection: sqlite3.Connection, readonly: bool) -> None:
    # The driver must not open transactions on its own; the "begin" listener does it.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {defaults.SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys = ON")
    if not readonly:
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
    cursor.close()


class _UnreadableValues:
    """Stored JSON values that are not JSON (a hand edit, a damaged page): each is read as
    NULL, counted and logged, so one bad value does not make every reader fail."""

    def __init__(self) -> None:
        self.count = 0

    def loads(self, text: str):
        try:
            return json.loads(text)
        except ValueError as exc:
            self.count += 1
            log.warning("a stored value is not valid JSON and is read as empty: %s", exc)
            return None


unreadable_values = _UnreadableValues()


def make_engine(location: DatabaseLocation, *, readonly: bool = False) -> Engine:
    url: str | URL = location.url
    if readonly and location.path is not None:
        # SQLite's own read-only mode; a URL object, not text, so the path is never parsed.
        query = {"mode": "ro", "uri": "true"}
        if _read_as_immutable(location.path):
            query["immutable"] = "1"
        url = URL.create("sqlite", database=f"file:{location.path}", query=query)
    engine = create_engine(url, json_deserializer=unreadable_values.loads)
    if engine.dialect.name != "sqlite":
        return engine

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, record):
        _set_pragmas(dbapi_connection, readonly)
        record.info["synchronous"] = "FULL"

    @event.listens_for(engine, "begin")
    def on_begin(conn):
        options = conn.get_execution_options()
        deferred = readonly or options.get(DEFERRED_BEGIN, False)
        if not deferred:
            # SQLite takes a new safety level only outside a transaction: set it before BEGIN,
            # and only when it changes (the pool keeps connections with their setting).
            level = "NORMAL" if options.get(UNSYNCED_COMMIT, False) else "FULL"
            info = conn.connection.info
            if info.get("synchronous") != level:
                conn.exec_driver_sql(f"PRAGMA synchronous = {level}")
                info["synchronous"] = level
        conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

    return engine


def _read_as_immutable(path: Path) -> bool:
    """Whether a reader must open `path` with SQLite's immutable=1 rather than make files.

    A WAL database is read through its -wal and -shm files, and a reader that finds none
    creates them (and leaves them behind, being unable to checkpoint). In a folder that is not
    ours to write (a read-only mount, another user's folder) that fails or leaves files of the
    wrong owner there. With no -wal and no -shm no writer has the database open (a writer keeps
    both while connected), so the file alone is the whole database: read it as immutable."""
    folder = path.parent
    try:
        ours = folder.stat().st_uid == os.geteuid() and os.access(folder, os.W_OK)
    except OSError:
        ours = False
    if ours:
        return False
    beside = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    return not any(os.path.lexists(file) for file in beside)


def for_reading(engine: Engine) -> Engine:
    """The same engine (pool, settings, listeners) with transactions that begin deferred: they
    only read, so they must not queue behind another connection's write lock."""
    return engine.execution_options(**{DEFERRED_BEGIN: True})


def unsynced_commits(engine: Engine) -> Engine:
    """The same engine with write transactions whose commit is not synced to disk itself
    (synchronous=NORMAL): in WAL mode it survives the process being killed at any point, and
    the next synced commit on the database syncs it too; only a power cut before that one can
    lose it. For a write on the path to governing a process (its discovery row, written just
    before its move into its cgroup), whose outcome is committed synced right after."""
    return engine.execution_options(**{UNSYNCED_COMMIT: True})


def stored_revision(engine: Engine) -> str | None:
    """The database's Alembic revision, or None for a database without a schema."""
    with engine.connect() as conn:
        has_table = conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).first()
        if not has_table:
            tables = conn.exec_driver_sql(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
            ).scalar_one()
            if tables:
                raise DatabaseError(
                    f"database {engine.url.database} has tables but no ffrtmp schema revision; "
                    "it was not created by ffrtmp"
                )
            return None
        row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
        return row[0] if row else None


def open_readonly(db: str | os.PathLike | None = None) -> Engine:
    """An engine for read commands: never creates or migrates, refuses a foreign schema."""
    location = db if isinstance(db, DatabaseLocation) else resolve(db)
    if location.path is not None:
        _check_file(location.path)
        if not location.path.exists() or location.path.stat().st_size == 0:
            raise DatabaseError(
                f"database {location.path} does not exist yet "
                "(start `ffrtmp watch` or run `ffrtmp db upgrade` to create it)"
            )
    engine = make_engine(location, readonly=True)
    try:
        revision = _revision_of(engine, location)
        if revision != head_revision():
            raise DatabaseError(_revision_mismatch(location, revision))
    except DatabaseError:
        engine.dispose()
        raise
    return engine


def read_revision(location: DatabaseLocation) -> str | None:
    """The revision of an existing database, looked at through a read-only engine (a writer's
    pragmas would alter the file) that is closed again."""
    engine = make_engine(location, readonly=True)
    try:
        return _revision_of(engine, location)
    finally:
        engine.dispose()


def _revision_of(engine: Engine, location: DatabaseLocation) -> str | None:
    """stored_revision(), any failure turned into one sentence naming the database."""
    try:
        return stored_revision(engine)
    except DatabaseError:
        raise
    except ACCESS_ERRORS as exc:
        raise DatabaseError(f"database {location} cannot be read: {_why(exc, location)}") from None


def _revision_mismatch(location: DatabaseLocation, revision: str | None) -> str:
    if revision is None:
        return f"database {location} has no schema yet; run `ffrtmp db upgrade --db {location}`"
    if _is_known_older(revision):
        return (
            f"database {location} has the older schema revision {revision}; "
            f"run `ffrtmp db upgrade --db {location}` (it keeps a backup copy)"
        )
    return (
        f"database {location} has schema revision {revision}, which this ffrtmp "
        f"({head_revision()}) does not know; use the newer ffrtmp that wrote it"
    )


def _is_known_older(revision: str) -> bool:
    return revision in known_revisions() and revision != head_revision()


def _prepare_file(path: Path) -> None:
    """Create the folder (0700) and an empty file (0600) before SQLite does, so the
    database is never readable by others, not even for a moment."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)


def backup(path: Path, now: datetime | None = None, *, step: str | None = None) -> Path:
    """A consistent copy of the database (SQLite's backup API, safe with WAL) beside it.

    With `step` (an upgrade's "FROM-to-TO") the copy is named after the step and made once:
    an upgrade that fails and is tried again at every start (systemd's Restart=) keeps the
    copy of the first attempt instead of filling the disk with one copy per attempt."""
    if step is not None:
        target = path.with_name(f"{path.name}.bak-{step}")
        if target.exists() and target.stat().st_size > 0:
            log.info("keeping the backup copy %s made by an earlier attempt", target)
            return target
    else:
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        target = path.with_name(f"{path.name}.bak-{stamp}")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        dest = sqlite3.connect(target)
        try:
            source.backup(dest)
        finally:
            dest.close()
    finally:
        source.close()
    return target


def open_for_writing(db: str | os.PathLike | DatabaseLocation | None = None) -> Engine:
    """An engine for the daemon and write commands, with the schema at the head revision:
    a missing or empty database is created; an older one is upgraded after a backup copy;
    a newer or unknown one is refused and left untouched."""
    location = db if isinstance(db, DatabaseLocation) else resolve(db)
    if location.path is not None:
        _check_file(location.path)
        if location.path.exists() and location.path.stat().st_size > 0:
            # Decide on a read-only look first: the writer's pragmas (WAL) alter the file.
            _refuse_unusable(location)
        try:
            _prepare_file(location.path)
        except OSError as exc:
            raise DatabaseError(
                f"database {location.path} cannot be created: {exc.strerror}"
            ) from None
    engine = make_engine(location)
    try:
        _bring_to_head(engine, location)
    except DatabaseError:
        engine.dispose()
        raise
    except ACCESS_ERRORS as exc:
        engine.dispose()
        raise DatabaseError(
            f"database {location} cannot be opened for writing: "
            + location.scrubbed(_why(exc, location))
        ) from None
    return engine


def _bring_to_head(engine: Engine, location: DatabaseLocation) -> None:
    revision = stored_revision(engine)
    if revision == head_revision():
        return
    if revision is not None and not _is_known_older(revision):
        raise DatabaseError(_revision_mismatch(location, revision))
    if revision is not None and location.path is not None:
        copy = backup(location.path, step=f"{revision}-to-{head_revision()}")
        log.warning("database %s is at revision %s; backed up to %s", location, revision, copy)
    from ffrtmp.migrate import upgrade

    upgrade(engine)
    if revision is None:
        log.info("database %s created at %s", location, head_revision())
    else:
        log.info("database %s upgraded from %s to %s", location, revision, head_revision())


# SQLite's words for a WAL database whose folder cannot hold the shared-memory index (-shm):
# network and virtual filesystems (NFS, 9p, some FUSE mounts) do not give shared mappings.
_NO_SHARED_MEMORY = ("disk I/O error", "locking protocol")


def _why(exc: BaseException, location: DatabaseLocation | None = None) -> str:
    """The cause in the driver's or the system's words, without SQLAlchemy's SQL and link."""
    cause = getattr(exc, "orig", None) or exc
    if isinstance(cause, OSError) and cause.strerror:
        reason = cause.strerror
    else:
        reason = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    if location is not None and location.path is not None and _is_full(location.path.parent):
        # A full disk shows as "disk I/O error" when SQLite cannot size its -shm file.
        return (
            f"{reason}: the filesystem holding it is full "
            "(SQLite needs room for its -wal and -shm files beside it); free space there"
        )
    if isinstance(cause, sqlite3.Error) and any(words in reason for words in _NO_SHARED_MEMORY):
        reason += (
            " (on NFS, 9p and some FUSE filesystems SQLite's WAL mode cannot share memory "
            "between connections: put the database on a local filesystem with --db or FFRTMP_DB)"
        )
    return reason


def _is_full(directory: Path) -> bool:
    try:
        return os.statvfs(directory).f_bavail == 0
    except OSError:
        return False


def _refuse_unusable(location: DatabaseLocation) -> None:
    revision = read_revision(location)
    if revision is not None and revision != head_revision() and not _is_known_older(revision):
        raise DatabaseError(_revision_mismatch(location, revision))
