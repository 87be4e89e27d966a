"""Dead letters have a lifecycle: a real daemon dead-letters a real process whose attaches keep
failing (a failpoint fails the kernel write, as a busy cgroup would); once that process ends
the dead letter is closed: kept as history, out of the actionable count, the gauge and the
default `retries list`."""

from __future__ import annotations

import json

import pytest
from cgroup_hierarchy import JobCgroups
from daemon_harness import query, write_config
from ffrtmp_commands import invoke

from ffrtmp import failpoints


@pytest.mark.vm
def test_a_dead_letter_is_closed_when_its_process_ends(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder, caplog, daemons
):
    failpoints.configure("governor.attach=EBUSY*inf")
    daemon = daemons(
        db_path,
        write_config(tmp_path, transcoder),
        job_cgroups.parent,
        events=False,
        max_retry_attempts=1,
    )
    now = daemon.clock.now()
    daemon.start(now)
    child = spawn([transcoder, "600"])
    daemon.full_scan(now)
    daemon.step(now + 400)  # the one retry, past any backoff: dead
    assert query(db_path, "SELECT state, closed_at FROM retry_items") == [("dead", None)]
    dead_lines = [r for r in caplog.records if r.getMessage().startswith("dead letter: ")]
    assert [r.levelname for r in dead_lines] == ["ERROR"]  # a line of its own
    assert f"pid {child.pid} " in dead_lines[0].getMessage()
    assert daemon.store.retry_depths().get("dead") == 1
    listed = json.loads(invoke(db_path, "retries", "list", "--json").stdout)
    assert [row["state"] for row in listed] == ["dead"]

    child.kill()
    child.wait()
    daemon.full_scan(now + 500)  # the scan's own look at what it follows sees the exit
    ((state, closed_reason, closed_at),) = query(
        db_path, "SELECT state, closed_reason, closed_at FROM retry_items"
    )
    assert (state, closed_reason) == ("dead", "process exited")
    assert closed_at is not None
    assert daemon.store.retry_depths().get("dead", 0) == 0  # what the gauge reports
    assert invoke(db_path, "retries", "list", "--json").stdout.strip() == "[]"
    history = json.loads(invoke(db_path, "retries", "list", "--all", "--json").stdout)
    assert [(r["state"], r["closed_reason"]) for r in history] == [("dead", "process exited")]
    kinds = [k for (k,) in query(db_path, "SELECT kind FROM process_events ORDER BY id")]
    assert kinds.index("dead_lettered") < kinds.index("exited")
    assert kinds.index("exited") < kinds.index("dead_letter_closed")
