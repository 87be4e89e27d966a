"""Shipping a node's history made through the store to a real PostgreSQL server: every row
once, again when it changes, resumable after SIGKILL, and actions from the centre applied once
on their node."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from candidates import make_candidate
from click.testing import CliRunner
from fleet_helpers import assert_same_rows, central_rows, make_history, node_id_of
from helpers_processes import STATE_TIMEOUT_S, wait_until
from sqlalchemy import create_engine, text

from ffrtmp.backoff import BackoffPolicy
from ffrtmp.cli import main
from ffrtmp.fleet import central
from ffrtmp.identity import current_identity

pytestmark = pytest.mark.fleet


def ship_once(db_path, url, *args) -> str:
    result = CliRunner().invoke(
        main, ["ship", "--once", "--db", str(db_path), *args], env={"FFRTMP_SHIP_TO": url}
    )
    assert result.exit_code == 0, result.output
    return result.output


def central_scalar(url: str, sql: str, **params):
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()
    finally:
        engine.dispose()


def test_every_row_arrives_once_and_again_when_it_changes(store, db_path, central_db):
    central.upgrade(central_db)
    ids = make_history(store, 120)
    out = ship_once(db_path, central_db, "--node-label", "edge-a", "--batch-size", "50")
    assert "node edge-a" in out
    assert_same_rows(db_path, central_db)
    # A row that changes after it was shipped is shipped again, and only once.
    alive = ids[0]  # dead-lettered, still running as far as the store knows
    store.record_exit(alive, now=datetime.now(UTC), exit_code=137, exit_signal=9, reason="killed")
    ship_once(db_path, central_db)
    ship_once(db_path, central_db)
    assert_same_rows(db_path, central_db)
    node = node_id_of(db_path)
    assert central_rows(central_db, node)["processes"][0]["exit_code"] == 137
    label = central_scalar(central_db, "SELECT label FROM fleet_nodes WHERE node_id = :n", n=node)
    assert label == "edge-a"
    # The local change log is emptied once the centre holds what it named.
    import sqlite3

    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("SELECT count(*) FROM ship_changes").fetchone()[0] == 0
    finally:
        conn.close()


def test_a_shipper_killed_mid_batch_resumes_and_nothing_is_doubled(store, db_path, central_db):
    central.upgrade(central_db)
    make_history(store, 3000)
    env = {**os.environ, "FFRTMP_SHIP_TO": central_db}
    shipper = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ffrtmp.cli",
            "ship",
            "--once",
            "--db",
            str(db_path),
            "--batch-size",
            "100",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:

        def cursor():
            try:
                return central_scalar(central_db, "SELECT max(shipped_seq) FROM fleet_nodes")
            except Exception:
                return None

        wait_until(lambda: (cursor() or 0) > 0, what="the first batch in the centre")
        assert shipper.poll() is None, "the shipper finished before it could be killed"
        os.kill(shipper.pid, signal.SIGKILL)
    finally:
        shipper.wait(timeout=STATE_TIMEOUT_S)
        shipper.stdout.close()
        shipper.stderr.close()
    assert shipper.returncode == -signal.SIGKILL
    ship_once(db_path, central_db, "--batch-size", "700")
    assert_same_rows(db_path, central_db)


def test_a_dead_letter_requeued_centrally_is_retried_on_its_node(
    store, db_path, central_db, spawn, transcoder
):
    from fleet_helpers import TRANSIENT

    central.upgrade(central_db)
    child = spawn([str(transcoder), "600"])
    identity = current_identity(child.pid)
    now = datetime.now(UTC)
    candidate = make_candidate(identity=identity, argv=("ffmpeg", "600"))
    process_id, _ = store.register(candidate, job_id="job-live", limits=None, now=now)
    store.record_attach_failure(
        process_id, TRANSIENT, now=now, retry_enabled=True, policy=BackoffPolicy(max_attempts=1)
    )
    store.record_attach_failure(
        process_id,
        TRANSIENT,
        now=now,
        retry_enabled=True,
        policy=BackoffPolicy(max_attempts=1),
        attempt=1,
    )
    ship_once(db_path, central_db, "--node-label", "edge-r")
    retry_id = central_scalar(central_db, "SELECT id FROM retry_items WHERE state = 'dead'")
    assert retry_id is not None

    runner = CliRunner()
    asked = runner.invoke(
        main,
        ["retries", "requeue", str(retry_id), "--node", "edge-r"],
        env={"FFRTMP_DB": central_db},
    )
    assert asked.exit_code == 0, asked.output
    # The node applies it once, through the local command's code, and ships the outcome back.
    ship_once(db_path, central_db)
    ship_once(db_path, central_db)
    assert central_scalar(central_db, "SELECT state FROM fleet_actions") == "applied"
    assert (
        central_scalar(central_db, "SELECT state FROM retry_items WHERE id = :i", i=retry_id)
        == "pending"
    )
    assert (
        central_scalar(central_db, "SELECT attempt FROM retry_items WHERE id = :i", i=retry_id) == 0
    )
    requeues = central_scalar(
        central_db, "SELECT count(*) FROM process_events WHERE kind = 'requeued'"
    )
    assert requeues == 1
    assert_same_rows(db_path, central_db)


def test_a_dead_letter_discarded_centrally_comes_back_only_with_force(
    store, db_path, central_db, spawn, transcoder
):
    from fleet_helpers import TRANSIENT

    central.upgrade(central_db)
    child = spawn([str(transcoder), "600"])
    now = datetime.now(UTC)
    candidate = make_candidate(identity=current_identity(child.pid), argv=("ffmpeg", "600"))
    process_id, _ = store.register(candidate, job_id="job-live", limits=None, now=now)
    for attempt in (0, 1):
        store.record_attach_failure(
            process_id,
            TRANSIENT,
            now=now,
            retry_enabled=True,
            policy=BackoffPolicy(max_attempts=1),
            attempt=attempt,
        )
    ship_once(db_path, central_db, "--node-label", "edge-f")
    retry_id = central_scalar(central_db, "SELECT id FROM retry_items WHERE state = 'dead'")

    def ask(*args) -> None:
        asked = CliRunner().invoke(
            main,
            ["retries", *args, str(retry_id), "--node", "edge-f"],
            env={"FFRTMP_DB": central_db},
        )
        assert asked.exit_code == 0, asked.output
        ship_once(db_path, central_db)

    def outcome() -> tuple:
        engine = create_engine(central_db)
        try:
            with engine.connect() as conn:
                return tuple(
                    conn.execute(
                        text("SELECT action, state, result FROM fleet_actions ORDER BY id DESC")
                    ).first()
                )
        finally:
            engine.dispose()

    ask("discard")
    assert outcome()[:2] == ("discard", "applied")
    ask("requeue")  # a discard is for good: the node refuses, as its own command would
    action, state, result = outcome()
    assert (action, state) == ("requeue", "refused")
    assert "discarded by an operator" in result and "--force" in result
    ask("requeue", "--force")
    assert outcome()[:2] == ("requeue --force", "applied")
    state_now = "SELECT state FROM retry_items WHERE id = :i"
    assert central_scalar(central_db, state_now, i=retry_id) == "pending"
    assert_same_rows(db_path, central_db)


def test_an_unknown_node_is_one_sentence(central_db):
    central.upgrade(central_db)
    result = CliRunner().invoke(
        main, ["retries", "discard", "3", "--node", "nowhere"], env={"FFRTMP_DB": central_db}
    )
    assert result.exit_code == 1
    assert "no node is named 'nowhere' in the central database" in result.output


def test_ship_without_once_keeps_shipping_what_comes(store, db_path, central_db, spawn):
    central.upgrade(central_db)
    make_history(store, 10)
    env = {**os.environ, "FFRTMP_SHIP_TO": central_db}
    shipper = spawn(
        [
            sys.executable,
            "-m",
            "ffrtmp.cli",
            "ship",
            "--db",
            str(db_path),
            "--ship-interval",
            "0.2",
        ],
        wait_exec=False,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    count = "SELECT count(*) FROM processes"
    wait_until(lambda: central_scalar(central_db, count) == 10, what="the first rows")
    make_history(store, 5, first_pid=50_000)
    wait_until(lambda: central_scalar(central_db, count) == 15, what="the rows made later")
    shipper.send_signal(signal.SIGTERM)
    shipper.wait(timeout=STATE_TIMEOUT_S)
    assert_same_rows(db_path, central_db)
