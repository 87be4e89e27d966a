"""Removing finished history older than the retention, in small batches.

What goes, when older than the cutoff (now - older_than_s):
- resolved retry items (succeeded, cancelled; dead only with include_dead), by `updated_at`;
- processes in a finished state (exited, vanished, skipped; dead only with include_dead), by
  `exited_at` (or `discovered_at` when they never had one), with their events, unless they
  still have a retry item that stays; their error events keep their rows (process_id NULL);
- error events, scans and health snapshots, by their own time; the newest health snapshot is
  always kept, so `ffrtmp health` can still tell when a daemon was last seen.
Pending retry items, and the processes they belong to, are never removed.

Every batch of at most `batch` rows is its own short transaction, so the daemon, which writes
between them, never waits long. `max_batches` and `should_stop` let a caller do the work in
slices: a later call carries on where this one stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, exists, func, not_, or_, select

from ffrtmp import defaults
from ffrtmp.models import ErrorEvent, HealthSnapshot, Process, ProcessEvent, RetryItem, Scan
from ffrtmp.states import ProcessState, RetryState

log = logging.getLogger(__name__)

TABLES = (
    "retry_items",
    "process_events",
    "processes",
    "error_events",
    "scans",
    "health_snapshots",
)


def _retry_prunable(cutoff: datetime, include_dead: bool) -> Any:
    states = [RetryState.SUCCEEDED, RetryState.CANCELLED]
    if include_dead:
        states.append(RetryState.DEAD)
    return and_(RetryItem.state.in_(states), RetryItem.updated_at < cutoff)


def _process_prunable(cutoff: datetime, include_dead: bool) -> Any:
    states = [
        ProcessState.EXITED,
        ProcessState.VANISHED,
        ProcessState.SKIPPED,
        ProcessState.RELEASED,
    ]
    if include_dead:
        states.append(ProcessState.DEAD)
    # A process stays while any retry item of it stays (a pending one above all).
    item_that_stays = exists().where(
        RetryItem.process_id == Process.id, not_(_retry_prunable(cutoff, include_dead))
    )
    return and_(
        Process.state.in_(states),
        or_(
            Process.exited_at < cutoff,
            and_(Process.exited_at.is_(None), Process.discovered_at < cutoff),
        ),
        not_(item_that_stays),
    )


def _simple_conditions(cutoff: datetime) -> dict[str, tuple[Any, Any]]:
    """table -> (primary key column, condition) for the tables pruned by their own time."""
    newest_snapshot = select(func.max(HealthSnapshot.id)).scalar_subquery()
    return {
        "error_events": (ErrorEvent.id, ErrorEvent.occurred_at < cutoff),
        "scans": (Scan.id, Scan.started_at < cutoff),
        "health_snapshots": (
            HealthSnapshot.id,
            and_(HealthSnapshot.taken_at < cutoff, HealthSnapshot.id != newest_snapshot),
        ),
    }


def count_prunable(
    engine: Engine, cutoff: datetime, *, include_dead: bool = False
) -> dict[str, int]:
    """What a prune with this cutoff would remove now, per table."""
    processes = select(Process.id).where(_process_prunable(cutoff, include_dead))
    queries = {
        "retry_items": select(func.count()).where(_retry_prunable(cutoff, include_dead)),
        "process_events": select(func.count()).where(ProcessEvent.process_id.in_(processes)),
        "processes": select(func.count()).select_from(processes.subquery()),
    }
    for table, (key, condition) in _simple_conditions(cutoff).items():
        queries[table] = select(func.count(key)).where(condition)
    with engine.connect() as conn:
        return {table: conn.execute(queries[table]).scalar_one() for table in TABLES}


def prune(
    store_or_engine: Any,
    older_than_s: float,
    now: datetime,
    *,
    include_dead: bool = False,
    dry_run: bool = False,
    batch: int = defaults.PRUNE_BATCH_ROWS,
    max_batches: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_batch: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Remove (or with dry_run only count) finished history older than `older_than_s` before
    `now`; returns the rows removed per table. `on_batch(table, rows)` follows the progress."""
    if older_than_s < 0:
        raise ValueError(f"the retention must not be negative, not {older_than_s}s")
    if batch < 1:
        raise ValueError(f"the batch size must be at least 1, not {batch}")
    engine: Engine = getattr(store_or_engine, "engine", store_or_engine)
    cutoff = now - timedelta(seconds=older_than_s)
    if dry_run:
        return count_prunable(engine, cutoff, include_dead=include_dead)

    removed = dict.fromkeys(TABLES, 0)
    batches = 0

    def may_continue() -> bool:
        if max_batches is not None and batches >= max_batches:
            return False
        return not (should_stop is not None and should_stop())

    def run_batches(one_batch: Callable[[Any], dict[str, int]], key_table: str) -> None:
        """Batches until one removes fewer than `batch` rows of `key_table`."""
        nonlocal batches
        while may_continue():
            with engine.begin() as conn:
                rows = one_batch(conn)
            batches += 1
            for table, n in rows.items():
                removed[table] += n
                if on_batch is not None and n:
                    on_batch(table, n)  # after the commit: the daemon may write meanwhile
            if rows[key_table] < batch:
                return

    def retry_batch(conn: Any) -> dict[str, int]:
        ids = select(RetryItem.id).where(_retry_prunable(cutoff, include_dead)).limit(batch)
        return {
            "retry_items": conn.execute(delete(RetryItem).where(RetryItem.id.in_(ids))).rowcount
        }

    def process_batch(conn: Any) -> dict[str, int]:
        ids = list(
            conn.scalars(
                select(Process.id).where(_process_prunable(cutoff, include_dead)).limit(batch)
            )
        )
        if not ids:
            return {"processes": 0}
        # The schema cascades, but deleting the events first keeps the count honest.
        events = conn.execute(delete(ProcessEvent).where(ProcessEvent.process_id.in_(ids)))
        rows = conn.execute(delete(Process).where(Process.id.in_(ids)))
        return {"process_events": events.rowcount, "processes": rows.rowcount}

    def simple_batch(table: str, key: Any, condition: Any) -> Callable[[Any], dict[str, int]]:
        def one_batch(conn: Any) -> dict[str, int]:
            ids = select(key).where(condition).limit(batch)
            return {table: conn.execute(delete(key.class_).where(key.in_(ids))).rowcount}

        return one_batch

    run_batches(retry_batch, "retry_items")
    run_batches(process_batch, "processes")
    for table, (key, condition) in _simple_conditions(cutoff).items():
        run_batches(simple_batch(table, key, condition), table)
    log.info(
        "pruned history older than %s: %s",
        cutoff.isoformat(sep=" ", timespec="seconds"),
        describe_removed(removed),
    )
    return removed


def describe_removed(removed: dict[str, int]) -> str:
    """`3 processes, 12 process_events`: the tables rows were removed from, or `nothing`."""
    return ", ".join(f"{count} {table}" for table, count in removed.items() if count) or "nothing"
