"""What an operator may do to the retry queue: requeue an item, or discard it.

Each action is one transaction through `Store.unit()` and leaves a process event behind, so the
trail shows who changed the queue. A requeue is refused unless the very process of the item
(same boot id, pid and start time) is still running: retrying an attach on a recycled pid
would govern a stranger. A discarded item is discarded for good: a requeue of it is refused
unless forced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ffrtmp.identity import current_identity
from ffrtmp.models import Process, RetryItem
from ffrtmp.states import EventKind, ProcessState, RetryState
from ffrtmp.store import Store, add_event, finish_retry

DISCARD_REASON = "discarded by operator"
REQUEUE_REASON = "requeued by operator"


class ActionRefused(Exception):
    """The action cannot be done; the message is one sentence for the operator."""


@dataclass(frozen=True)
class RequeueSummary:
    requeued: tuple[int, ...]
    refused: tuple[str, ...]  # one sentence per item left alone


def _exit_reason(process: Process) -> str:
    now_there = current_identity(process.pid)
    if now_there is None or process.exited_at is not None:
        return f"pid {process.pid} has exited"
    if now_there.boot_id != process.boot_id:
        return f"pid {process.pid} belonged to an earlier boot"
    return f"pid {process.pid} has exited and now belongs to another process"


def requeue(
    store: Store,
    retry_id: int,
    *,
    now: datetime,
    force: bool = False,
    trail: dict | None = None,
) -> None:
    """Make the item due now with its attempts reset, while its process still runs. A
    discarded item is refused unless `force`. `trail` is added to the event (the fleet's
    action id, when the centre asked)."""
    with store.unit() as s:
        item = _existing_item(s, retry_id)
        if item.final_reason == DISCARD_REASON and item.state == RetryState.CANCELLED and not force:
            raise ActionRefused(
                f"retry item {retry_id} was discarded by an operator, which is for good; "
                "add --force to retry it all the same"
            )
        _requeue_one(s, item, s.get(Process, item.process_id), now, trail)


def requeue_all_dead(store: Store, *, now: datetime) -> RequeueSummary:
    """Requeue every dead letter whose process still runs; the others are left as they are."""
    requeued: list[int] = []
    refused: list[str] = []
    with store.unit() as s:
        rows = s.execute(
            select(RetryItem, Process)
            .join(Process, Process.id == RetryItem.process_id)
            .where(RetryItem.state == RetryState.DEAD, RetryItem.closed_at.is_(None))
            .order_by(RetryItem.id)
        ).all()
        for item, process in rows:
            try:
                _requeue_one(s, item, process, now)
            except ActionRefused as exc:
                refused.append(str(exc))
            else:
                requeued.append(item.id)
    return RequeueSummary(tuple(requeued), tuple(refused))


def _requeue_one(
    s, item: RetryItem, process: Process, now: datetime, trail: dict | None = None
) -> None:
    if item.state == RetryState.SUCCEEDED:
        raise ActionRefused(
            f"retry item {item.id} cannot be requeued: it succeeded (the process was attached)"
        )
    if not process.identity.is_alive():
        raise ActionRefused(f"retry item {item.id} cannot be requeued: {_exit_reason(process)}")
    previous = {"retry_id": item.id, "previous_state": item.state, "previous_attempt": item.attempt}
    item.state, item.attempt = RetryState.PENDING, 0
    item.next_attempt_at, item.claimed_until = now, None
    item.final_reason, item.updated_at = None, now
    item.closed_at, item.closed_reason = None, None
    process.state, process.state_reason = ProcessState.RETRYING, REQUEUE_REASON
    add_event(
        s, process.id, EventKind.REQUEUED, now, {**previous, "by": "operator", **(trail or {})}
    )


def discard(store: Store, retry_id: int, *, now: datetime, trail: dict | None = None) -> bool:
    """Cancel a pending or dead item; False when it was cancelled already (nothing to do)."""
    with store.unit() as s:
        item = _existing_item(s, retry_id)
        if item.state == RetryState.CANCELLED:
            return False
        if item.state == RetryState.SUCCEEDED:
            raise ActionRefused(
                f"retry item {retry_id} cannot be discarded: it succeeded (the process was "
                "attached)"
            )
        details = {"retry_id": retry_id, "previous_state": item.state, "by": "operator"}
        finish_retry(
            s, item, RetryState.CANCELLED, DISCARD_REASON, now, {**details, **(trail or {})}
        )
        process = s.get(Process, item.process_id)
        if process.state == ProcessState.RETRYING:
            # Still followed to its exit, but no attach will be tried again: ungoverned.
            process.state, process.state_reason = ProcessState.OBSERVED, DISCARD_REASON
        return True


def discard_all_dead(store: Store, *, now: datetime) -> tuple[int, ...]:
    """Discard every actionable dead letter (closed ones are history already); their ids."""
    with store.unit() as s:
        items = s.scalars(
            select(RetryItem)
            .where(RetryItem.state == RetryState.DEAD, RetryItem.closed_at.is_(None))
            .order_by(RetryItem.id)
        ).all()
        for item in items:
            trail = {"retry_id": item.id, "previous_state": item.state, "by": "operator"}
            finish_retry(s, item, RetryState.CANCELLED, DISCARD_REASON, now, trail)
        return tuple(item.id for item in items)


def _existing_item(s: Session, retry_id: int) -> RetryItem:
    item = s.get(RetryItem, retry_id)
    if item is None:
        raise ActionRefused(f"retry item {retry_id} does not exist")
    return item
