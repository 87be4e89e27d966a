"""Shipping: a node's local rows to the central database, in batches, again when they change.

One batch is: read up to `batch_size` entries of the local change log (ship_changes) past the
cursor and the current state of the rows they name, in one read transaction (a snapshot); then,
in ONE central transaction, upsert those rows on (node_id, id) and move the node's cursor
(fleet_nodes.shipped_seq) past them. A batch is thus in the centre whole or not at all, and a
shipper killed at any moment resumes from the cursor the centre holds: a row shipped twice is
stored once. Only then are the shipped log entries deleted locally (a leftover is skipped next
time). A row changed after it was read has a newer log entry, so it is shipped again.

Nothing here runs in the daemon's loop: `watch --ship-to` runs it in its own thread, and any
failure (unreachable server, wrong password, newer schema) is one logged sentence and a retry
later; the node's own database is never held up by the network.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import Engine, delete, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import SQLAlchemyError

from ffrtmp import __version__, defaults, schema
from ffrtmp.database import DatabaseError, for_reading
from ffrtmp.errors import is_programming_error
from ffrtmp.fleet import central
from ffrtmp.fleet.central_schema import CENTRAL_TABLES, NODE_COLUMN, fleet_nodes, shipped_tables
from ffrtmp.fleet.node import Node, ensure_node, log_whole_history

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = defaults.SHIP_BATCH_SIZE
# SQLite's limit on bound parameters is 32766 from 3.32 on; stay well below it.
IDS_PER_SELECT = 5000
CHANGES = schema.ship_changes


@dataclass(frozen=True)
class BatchReport:
    changes: int  # change-log entries consumed
    rows: int  # distinct rows upserted centrally
    pending: int  # entries left after this batch
    cursor: int


def _quoted(names) -> str:
    return ", ".join(f'"{name}"' for name in names)


@cache
def _select_sql(table, count: int) -> str:
    marks = ", ".join("?" * count)
    return (
        f"SELECT {_quoted(c.name for c in table.columns)} FROM {table.name} WHERE id IN ({marks})"
    )


@cache
def _upsert_sql(name: str) -> tuple[str, str, str]:
    """Statements that stage rows by COPY in a temporary table and upsert them from it: COPY is
    PostgreSQL's fastest way in, and one INSERT ... SELECT ... ON CONFLICT merges them."""
    table = CENTRAL_TABLES[name]
    columns = [c.name for c in table.columns if c.name != NODE_COLUMN]
    stage = f"ffrtmp_stage_{name}"
    # The local rows as they are; the node id is added by the merge.
    create = (
        f"CREATE TEMP TABLE IF NOT EXISTS {stage} AS SELECT {_quoted(columns)} FROM {name} "
        "WITH NO DATA"
    )
    copy = f"COPY {stage} ({_quoted(columns)}) FROM STDIN"
    updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in columns if c != "id")
    merge = (
        f"INSERT INTO {name} ({NODE_COLUMN}, {_quoted(columns)}) "
        f"SELECT %s, {_quoted(columns)} FROM {stage} "
        f"ON CONFLICT ({NODE_COLUMN}, id) DO UPDATE SET {updates}"
    )
    return create, copy, merge


def _copy_upsert(conn, name: str, node_id: str, rows: list[tuple]) -> None:
    create, copy_sql, merge = _upsert_sql(name)
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(create)
        cursor.execute(f"TRUNCATE ffrtmp_stage_{name}")
        with cursor.copy(copy_sql) as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(merge, (node_id,))
    finally:
        cursor.close()


class Shipper:
    """Ships one local database (an engine of ffrtmp.database) to one central URL."""

    def __init__(
        self,
        local: Engine,
        central_url: str,
        *,
        label: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_command_line: bool = False,
    ) -> None:
        self.local = local
        self.central_url = central_url
        self.label = label
        self.batch_size = batch_size
        self.on_command_line = on_command_line
        self.central: Engine | None = None
        self.node: Node | None = None
        self.cursor = 0

    # --- connection -----------------------------------------------------------------------

    def connect(self) -> None:
        """Open the centre (checking its schema), make or find this node, read its cursor."""
        if self.central is None:
            self.central = central.open_central(
                self.central_url, on_command_line=self.on_command_line
            )
        node, made_now = ensure_node(self.local, self.label)
        now = datetime.now(UTC)
        values = dict(
            label=node.label,
            hostname=node.hostname,
            machine_id=node.machine_id,
            ffrtmp_version=__version__,
            last_contact_at=now,
        )
        stmt = pg_insert(fleet_nodes).values(
            node_id=node.node_id,
            first_shipped_at=now,
            shipped_seq=0,
            pending_changes=0,
            **values,
        )
        # xmax is 0 on a row this statement inserted rather than updated.
        stmt = stmt.on_conflict_do_update(index_elements=[NODE_COLUMN], set_=values).returning(
            fleet_nodes.c.shipped_seq, literal_column("xmax = 0")
        )
        try:
            with self.central.begin() as conn:
                cursor, inserted = conn.execute(stmt).one()
        except (SQLAlchemyError, OSError) as exc:
            raise DatabaseError(self._unreachable(exc)) from None
        if inserted and not made_now:
            # A centre that has never seen this node (new, or rebuilt): the whole history again.
            with self.local.begin() as conn:
                conn.execute(delete(CHANGES))
                log_whole_history(conn)
        self.node, self.cursor = node, cursor

    def _unreachable(self, exc: BaseException) -> str:
        url = central.parse(self.central_url)
        return f"central database {central.hidden(url)} cannot be used: {central.reason(exc, url)}"

    def close(self) -> None:
        if self.central is not None:
            self.central.dispose()
            self.central = None
        self.node = None  # connect() again: the centre may have been rebuilt meanwhile

    # --- shipping -------------------------------------------------------------------------

    def ship_batch(self) -> BatchReport:
        """One batch past the cursor; changes == 0 when there was nothing to ship."""
        if self.node is None:
            self.connect()
        assert self.node is not None
        with for_reading(self.local).connect() as conn, conn.begin():
            changes = conn.execute(
                select(CHANGES.c.seq, CHANGES.c.table_name, CHANGES.c.row_id)
                .where(CHANGES.c.seq > self.cursor)
                .order_by(CHANGES.c.seq)
                .limit(self.batch_size)
            ).all()
            wanted: dict[str, set[int]] = {}
            for _seq, table_name, row_id in changes:
                wanted.setdefault(table_name, set()).add(row_id)
            rows: dict[str, list[tuple]] = {}
            sqlite_cursor = conn.connection.driver_connection.cursor()
            for table in shipped_tables():
                ids = sorted(wanted.pop(table.name, ()))
                found: list[tuple] = []
                for start in range(0, len(ids), IDS_PER_SELECT):
                    chunk = ids[start : start + IDS_PER_SELECT]
                    # The stored text as it is (times, JSON): PostgreSQL's COPY parses it.
                    sqlite_cursor.execute(_select_sql(table, len(chunk)), chunk)
                    found += sqlite_cursor.fetchall()
                if found:
                    rows[table.name] = found
            sqlite_cursor.close()
            last = changes[-1][0] if changes else self.cursor
            # Entries of tables this code does not ship (a newer local schema) are passed over.
            pending = conn.execute(
                select(func.count()).select_from(CHANGES).where(CHANGES.c.seq > last)
            ).scalar_one()
            oldest_pending = conn.execute(
                select(CHANGES.c.changed_at).where(CHANGES.c.seq > last).order_by(CHANGES.c.seq)
            ).first()
        now = datetime.now(UTC)
        try:
            assert self.central is not None
            with self.central.begin() as cconn:
                for name, batch in rows.items():
                    _copy_upsert(cconn, name, self.node.node_id, batch)
                progress: dict[str, Any] = dict(
                    last_contact_at=now,
                    pending_changes=pending,
                    oldest_pending_at=oldest_pending[0] if oldest_pending else None,
                )
                if changes:
                    progress.update(shipped_seq=func.greatest(fleet_nodes.c.shipped_seq, last))
                    progress.update(last_shipped_at=now)
                cconn.execute(
                    update(fleet_nodes)
                    .where(fleet_nodes.c.node_id == self.node.node_id)
                    .values(**progress)
                )
        except DatabaseError:
            raise
        except (SQLAlchemyError, OSError) as exc:
            raise DatabaseError(self._unreachable(exc)) from None
        self.cursor = last
        if changes:
            self._forget_shipped(last)
        return BatchReport(len(changes), sum(map(len, rows.values())), pending, last)

    def _forget_shipped(self, last: int) -> None:
        """Drop the log entries the centre holds; a failure only leaves work for later."""
        try:
            with self.local.begin() as conn:
                conn.execute(delete(CHANGES).where(CHANGES.c.seq <= last))
        except (SQLAlchemyError, OSError) as exc:  # the daemon's own writes come first
            log.debug("shipped change log entries not removed yet: %s", exc)

    def ship_all(self) -> int:
        """Batches until nothing is left; the rows shipped."""
        shipped = 0
        while True:
            report = self.ship_batch()
            shipped += report.rows
            if report.changes < self.batch_size:
                return shipped


class ShipperThread(threading.Thread):
    """`watch --ship-to`: ships every `interval` seconds, apart from the daemon's loop. Each
    failure is logged once as one sentence (again when it changes) and retried later."""

    def __init__(self, make_shipper, interval: float, apply_actions=None) -> None:
        super().__init__(name="ffrtmp-shipper", daemon=True)
        self.make_shipper = make_shipper
        self.interval = interval
        self.apply_actions = apply_actions
        self.stopping = threading.Event()
        self.last_problem: str | None = None

    def run(self) -> None:
        shipper = None
        while not self.stopping.is_set():
            try:
                if shipper is None:
                    shipper = self.make_shipper()
                shipper.ship_all()
                if self.apply_actions is not None:
                    self.apply_actions(shipper)
                if self.last_problem is not None:
                    log.info("shipping to the central database works again")
                    self.last_problem = None
            except Exception as exc:  # the thread's catch-all: shipping is tried again later
                problem = str(exc) if isinstance(exc, DatabaseError) else f"shipping failed: {exc}"
                if is_programming_error(exc):
                    log.error("shipping failed on a programming error", exc_info=exc)
                if problem != self.last_problem:
                    log.error("%s; the node keeps governing and ships later", problem)
                    self.last_problem = problem
                if shipper is not None:
                    shipper.close()
                    shipper = None
            self.stopping.wait(self.interval)
        if shipper is not None:
            try:  # the daemon's last rows (its run's stop) go too, when the centre is there
                shipper.ship_all()
            except (DatabaseError, SQLAlchemyError, OSError) as exc:
                log.info("the last rows are shipped at the next start: %s", exc)
            shipper.close()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        self.join(timeout)
