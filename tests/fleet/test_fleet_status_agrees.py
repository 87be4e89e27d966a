"""`fleet status` and `health --node` judge a node's health the same way: the one never says
`stale (healthy)` where the other says unhealthy."""

from __future__ import annotations

import json

import pytest
from test_fleet_reads import odd_endings, run, two_nodes  # noqa: F401  (fixtures)

pytestmark = pytest.mark.fleet


def _agree(url: str) -> list[dict]:
    listed = run(url, "fleet", "status", "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    for row in rows:
        alone = run(url, "health", "--node", row["node"], "--json")
        judged = json.loads(alone.stdout)
        assert (row["status"], row["status_since"]) == (
            judged["status"],
            judged["status_since"],
        ), row["node"]
    return rows


def test_a_node_not_heard_of_for_an_hour_is_unhealthy_in_both(two_nodes):  # noqa: F811
    rows = _agree(two_nodes)
    # Their snapshots were taken an hour back: no daemon has been seen since.
    assert [row["status"] for row in rows] == ["unhealthy", "unhealthy"]
    assert all(row["status_since"] is not None for row in rows)


def test_a_node_seen_just_now_is_as_its_daemon_said_in_both(odd_endings):  # noqa: F811
    url, _now = odd_endings
    assert [row["status"] for row in _agree(url)] == ["degraded"]
