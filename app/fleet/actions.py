"""Operators' actions from the centre: `retries requeue/discard` on the central database record
a pending row in fleet_actions for the node that owns the item; that node's shipper fetches it,
applies it through the very functions the local command uses (ffrtmp.operator_actions), and
writes the result back. The local event it leaves names the action (details.fleet_action), so
an action applied before a crash is recognised and never applied twice.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select, update

from ffrtmp import operator_actions, schema
from ffrtmp.fleet.central_schema import fleet_actions
from ffrtmp.fleet.reads import resolve_node


def request(engine: Engine, node: str, action: str, retry_id: int) -> int:
    """Record the action for the node; its id."""
    with engine.begin() as conn:
        node_id = resolve_node(conn, node)
        return conn.execute(
            insert(fleet_actions)
            .values(
                node_id=node_id,
                action=action,
                retry_id=retry_id,
                requested_at=datetime.now(UTC),
                requested_by=getpass.getuser(),
                state="pending",
            )
            .returning(fleet_actions.c.id)
        ).scalar_one()


def _applied_before(store, action_id: int) -> bool:
    events = schema.process_events
    with store.engine.connect() as conn:
        found = conn.execute(
            select(events.c.id)
            .where(events.c.details["fleet_action"].as_integer() == action_id)
            .limit(1)
        ).first()
    return found is not None


def apply_pending_actions(shipper, store) -> int:
    """Apply this node's pending actions once each and record their outcome centrally."""
    if shipper.node is None:
        shipper.connect()
    with shipper.central.connect() as conn:
        pending = conn.execute(
            select(fleet_actions)
            .where(
                fleet_actions.c.node_id == shipper.node.node_id, fleet_actions.c.state == "pending"
            )
            .order_by(fleet_actions.c.id)
        ).all()
    for action in pending:
        now = datetime.now(UTC)
        trail = {"fleet_action": action.id, "requested_by": action.requested_by}
        if _applied_before(store, action.id):
            state, result = "applied", "applied before (recognised by its event)"
        else:
            try:
                if action.action in ("requeue", "requeue --force"):
                    force = action.action == "requeue --force"
                    operator_actions.requeue(
                        store, action.retry_id, now=now, force=force, trail=trail
                    )
                    result = f"retry item {action.retry_id} requeued: due now, attempts reset to 0"
                else:
                    changed = operator_actions.discard(store, action.retry_id, now=now, trail=trail)
                    result = (
                        f"retry item {action.retry_id} discarded"
                        if changed
                        else f"retry item {action.retry_id} was already cancelled; nothing to do"
                    )
                state = "applied"
            except operator_actions.ActionRefused as exc:
                state, result = "refused", str(exc)
        with shipper.central.begin() as conn:
            conn.execute(
                update(fleet_actions)
                .where(fleet_actions.c.id == action.id)
                .values(state=state, result=result, done_at=now)
            )
    return len(pending)
