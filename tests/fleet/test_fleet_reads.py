"""The read commands on the central database: every node's rows with a NODE column, --node for
one node with its own ids, and `sql` that cannot write."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from candidates import make_candidate
from click.testing import CliRunner
from fleet_helpers import make_history
from test_fleet_shipping import ship_once

from ffrtmp.cli import main
from ffrtmp.database import open_for_writing
from ffrtmp.fleet import central
from ffrtmp.store import Store

pytestmark = pytest.mark.fleet


@pytest.fixture
def two_nodes(tmp_path, central_db):
    central.upgrade(central_db)
    for label, count in (("edge-a", 30), ("edge-b", 12)):
        path = tmp_path / f"{label}.db"
        store = Store(open_for_writing(path))
        try:
            make_history(store, count)
        finally:
            store.close()
        ship_once(path, central_db, "--node-label", label)
    return central_db


def run(url, *args):
    result = CliRunner().invoke(main, list(args), env={"FFRTMP_DB": url})
    return result


def test_lists_show_every_nodes_rows_with_their_own_ids_and_a_node_column(two_nodes):
    result = run(two_nodes, "processes", "list", "--limit", "1000", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    by_node = {}
    for row in rows:
        by_node.setdefault(row["node"], []).append(row["id"])
    assert sorted(by_node["edge-a"]) == list(range(1, 31))
    assert sorted(by_node["edge-b"]) == list(range(1, 13))
    table = run(two_nodes, "retries", "list")
    assert table.exit_code == 0, table.output
    assert table.output.splitlines()[0].startswith("NODE")
    retries = json.loads(run(two_nodes, "retries", "list", "--json").output)
    # Each retry item joined with its own node's process: the pid matches the job id.
    assert {r["node"] for r in retries} == {"edge-a", "edge-b"}
    assert all(r["job_id"] == f"job-{r['pid']}" for r in retries)
    assert len(retries) == 10 + 4


def test_node_limits_to_one_node_and_show_finds_its_item(two_nodes):
    rows = json.loads(run(two_nodes, "processes", "list", "--node", "edge-b", "--json").output)
    assert len(rows) == 12 and "node" not in rows[0]
    shown = run(two_nodes, "processes", "show", "5", "--node", "edge-b", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["process"]["job_id"] == "job-10004"
    ambiguous = run(two_nodes, "processes", "show", "5")
    assert ambiguous.exit_code == 2
    assert "give --node: ids are each node's own" in ambiguous.output
    unknown = run(two_nodes, "scans", "list", "--node", "edge-z")
    assert unknown.exit_code == 1
    assert "no node is named 'edge-z'" in unknown.output


def test_sql_on_the_central_database_cannot_write(two_nodes):
    counted = run(
        two_nodes, "sql", "SELECT node_id, count(*) AS n FROM processes GROUP BY 1", "--json"
    )
    assert counted.exit_code == 0, counted.output
    assert sorted(r["n"] for r in json.loads(counted.output)) == [12, 30]
    refused = run(two_nodes, "sql", "DELETE FROM processes")
    assert refused.exit_code == 1
    assert "read-only transaction" in refused.output
    again = json.loads(
        run(two_nodes, "sql", "SELECT count(*) AS n FROM processes", "--json").output
    )
    assert again == [{"n": 42}]
    one = run(two_nodes, "sql", "SELECT count(*) AS n FROM processes", "--node", "edge-b", "--json")
    assert json.loads(one.output) == [{"n": 12}]
    # --timeout bounds the statement on the server too (its statement_timeout).
    slow = run(two_nodes, "sql", "SELECT pg_sleep(60)", "--timeout", "300ms")
    assert slow.exit_code == 1, slow.output
    assert "the query was stopped after 0.3s" in slow.output
    capped = run(two_nodes, "sql", "SELECT id FROM processes", "--max-rows", "5", "--json")
    assert len(json.loads(capped.stdout)) == 5


def test_fleet_status_has_one_line_per_node(two_nodes):
    result = run(two_nodes, "fleet", "status", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["node"]: r for r in json.loads(result.output)}
    assert set(rows) == {"edge-a", "edge-b"}
    assert rows["edge-a"]["retry_pending"] == 10 and rows["edge-b"]["retry_pending"] == 4
    assert rows["edge-a"]["dead_letters"] == 0
    assert rows["edge-a"]["lag_rows"] == 0
    # The snapshots were made an hour back: a live daemon would have written newer ones.
    assert rows["edge-a"]["status"] == "unhealthy"  # as `health --node edge-a` says
    assert rows["edge-a"]["status_since"] is not None
    table = run(two_nodes, "fleet", "status")
    assert table.output.splitlines()[0].split()[:3] == ["NODE", "STATUS", "STATUS_SINCE"]


def test_health_on_the_centre_is_one_nodes(two_nodes):
    result = run(two_nodes, "health", "--node", "edge-a", "--json")
    assert json.loads(result.output)["retry_pending"] == 10
    assert result.exit_code == 2  # its newest snapshot is an hour old: no daemon seen
    fleet_wide = run(two_nodes, "health")
    assert fleet_wide.exit_code == 2
    assert "give --node, or see every node's with `ffrtmp fleet status`" in fleet_wide.output


def test_node_on_a_nodes_own_database_is_a_usage_error(store, db_path):
    result = CliRunner().invoke(main, ["scans", "list", "--db", str(db_path), "--node", "x"])
    assert result.exit_code == 2
    assert "--node is for a central (PostgreSQL) database" in result.output


@pytest.fixture
def odd_endings(tmp_path, central_db):
    """One node with the endings the read filters look for: an OOM kill (SIGKILL), an exit
    code 3, a dead letter closed because its process ended, and a snapshot that says since
    when its status holds."""
    from datetime import UTC, datetime, timedelta

    from fleet_helpers import TRANSIENT

    from ffrtmp.backoff import BackoffPolicy

    central.upgrade(central_db)
    path = tmp_path / "edge-c.db"
    store = Store(open_for_writing(path))
    now = datetime.now(UTC)
    try:
        make_history(store, 3)

        def process(pid: int) -> int:
            candidate = make_candidate(pid, 7, argv=("ffmpeg", str(pid)))
            return store.register(candidate, job_id=f"job-{pid}", limits=None, now=now)[0]

        ending = {"now": now, "reason": None}
        store.record_exit(process(20_001), exit_code=None, exit_signal=9, oom_killed=True, **ending)
        store.record_exit(process(20_002), exit_code=3, exit_signal=None, **ending)
        dead = process(20_003)
        for attempt in (0, 1):
            store.record_attach_failure(
                dead,
                TRANSIENT,
                now=now,
                retry_enabled=True,
                policy=BackoffPolicy(max_attempts=1),
                attempt=attempt,
            )
        store.record_exit(dead, exit_code=0, exit_signal=None, **ending)
        store.record_health(
            now=now,
            run_id=None,
            status="degraded",
            reasons=["attach failures"],
            counters={"status_since": now - timedelta(minutes=7)},
            errors_by_type={},
        )
    finally:
        store.close()
    ship_once(path, central_db, "--node-label", "edge-c")
    return central_db, now


def test_read_filters_and_the_actionable_default_hold_on_the_centre(odd_endings):
    url, now = odd_endings
    by_filter = {
        flags: [
            (r["node"], r["pid"])
            for r in json.loads(run(url, "processes", "list", *flags, "--json").output)
        ]
        for flags in (("--oom",), ("--signal", "KILL"), ("--exit-code", "3"))
    }
    assert by_filter == {
        ("--oom",): [("edge-c", 20_001)],
        ("--signal", "KILL"): [("edge-c", 20_001)],
        ("--exit-code", "3"): [("edge-c", 20_002)],
    }
    table = run(url, "processes", "list", "--oom", "-o", "pid,job_id")
    assert table.exit_code == 0, table.output
    assert table.output.split() == ["NODE", "PID", "JOB_ID", "edge-c", "20001", "job-20001"]
    # The dead letter whose process ended is history: listed with --all only.
    actionable = json.loads(run(url, "retries", "list", "--json").output)
    everything = json.loads(run(url, "retries", "list", "--all", "--json").output)
    closed = [r for r in everything if r["closed_reason"] is not None]
    assert [r["pid"] for r in closed] == [20_003]
    assert 20_003 not in {r["pid"] for r in actionable}
    status = json.loads(run(url, "fleet", "status", "--json").output)
    assert status[0]["dead_letters"] == 0  # closed: nothing to act on
    assert status[0]["status"] == "degraded"
    assert status[0]["status_since"] == (now - timedelta(minutes=7)).isoformat().replace(
        "+00:00", "Z"
    )


def test_events_health_and_top_on_the_centre(odd_endings):
    url, _now = odd_endings
    events = run(url, "events", "--node", "edge-c", "--limit", "1000", "--json")
    assert events.exit_code == 0, events.output
    kinds = [json.loads(line).get("kind") for line in events.output.splitlines()]
    assert "oom_killed" in kinds and "dead_letter_closed" in kinds
    fleet_wide = run(url, "events")
    assert fleet_wide.exit_code == 2
    assert "events are one node's: give --node" in fleet_wide.output
    health = run(url, "health", "--node", "edge-c")
    assert health.exit_code == 1, health.output  # degraded, and seen just now
    assert "judged from the node's shipped snapshots" in health.output
    top = run(url, "top", "--once")
    assert top.exit_code == 2
    assert "run it on the node" in top.output
