"""`ffrtmp fleet status`: one line per node, in one query over the central tables."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

STATUS_COLUMNS = (
    "node",
    "status",
    "status_since",
    "last_shipped_at",
    "lag_rows",
    "lag_s",
    "governed",
    "retry_pending",
    "dead_letters",
)

# The tables are named with their schema: the session shadows them with one node's views
# (ffrtmp.fleet.reads), which each node's health is read from.
# "since": what the newest snapshot says itself (health_snapshots.status_since, the daemon's
# own word since local revision 0003), else the oldest snapshot of the newest run of snapshots
# with the current status (COALESCE evaluates that only when needed).
_QUERY = text(
    """
SELECT n.node_id, n.label, n.last_contact_at, n.last_shipped_at, n.pending_changes,
       n.oldest_pending_at, h.status, h.taken_at,
       COALESCE(h.status_since,
         (SELECT min(s.taken_at) FROM public.health_snapshots s
           WHERE s.node_id = n.node_id AND s.taken_at > COALESCE(
             (SELECT max(o.taken_at) FROM public.health_snapshots o
               WHERE o.node_id = n.node_id AND o.status <> h.status), '-infinity'))
       ) AS status_since,
       (SELECT count(*) FROM public.processes p
         WHERE p.node_id = n.node_id AND p.state = 'attached' AND p.exited_at IS NULL) AS governed,
       (SELECT count(*) FROM public.retry_items r
         WHERE r.node_id = n.node_id AND r.state = 'pending') AS retry_pending,
       (SELECT count(*) FROM public.retry_items r
         WHERE r.node_id = n.node_id AND r.state = 'dead' AND r.closed_at IS NULL
       ) AS dead_letters
  FROM public.fleet_nodes n
  LEFT JOIN LATERAL (
    SELECT status, taken_at, status_since FROM public.health_snapshots
     WHERE node_id = n.node_id ORDER BY taken_at DESC, id DESC LIMIT 1) h ON true
 ORDER BY n.label, n.node_id
"""
)


def fleet_status(
    conn: Connection, now: datetime, health_of: Callable[[str], dict]
) -> list[dict[str, Any]]:
    """Each node's health, and how far the centre is behind it: the changes not yet shipped
    at its last contact, and the age of the oldest of them (or, with none pending, the age of
    that contact).

    `health_of(node_id)`: the node's health as `ffrtmp health --node` judges it
    (`judged_by_node`: ffrtmp.stored_health on the node's shipped rows), so that the two
    never disagree: a node whose newest snapshot is older than a live daemon leaves them is
    unhealthy in both, with the same `status_since`."""
    from ffrtmp.utctime import UTCDateTime

    decode = UTCDateTime().process_result_value
    rows = []
    for r in conn.execute(_QUERY).mappings().all():
        judged = health_of(r["node_id"])
        contact = decode(r["last_contact_at"], None)
        oldest = decode(r["oldest_pending_at"], None)
        behind_since = oldest if r["pending_changes"] and oldest is not None else contact
        rows.append(
            {
                "node": r["label"],
                "node_id": r["node_id"],
                "status": judged["status"],
                # Snapshots older than revision 0003 say no status_since: the run of them.
                "status_since": judged["status_since"]
                or (decode(r["status_since"], None) if judged["status"] == r["status"] else None),
                "last_shipped_at": decode(r["last_shipped_at"], None),
                "last_contact_at": contact,
                "lag_rows": r["pending_changes"],
                "lag_s": round(max(0.0, (now - behind_since).total_seconds()), 1),
                "governed": r["governed"],
                "retry_pending": r["retry_pending"],
                "dead_letters": r["dead_letters"],
            }
        )
    return rows


def judged_by_node(conn: Connection, now: datetime) -> Callable[[str], dict]:
    """`health_of` for fleet_status: on a session whose tables are shadowed by one node's
    views (ffrtmp.fleet.reads), each node's health as `ffrtmp health --node` reports it."""
    from ffrtmp.fleet.reads import select_node
    from ffrtmp.stored_health import current_health

    def health_of(node_id: str) -> dict:
        select_node(conn, node_id)
        return current_health(conn, now)

    return health_of
