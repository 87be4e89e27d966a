"""Real `ffrtmp watch --ship-to` daemons, real governed processes, one real PostgreSQL server:
every local row centrally exactly once, across a partition of the server; and bad central
URLs that never stop a daemon from governing."""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from daemon_harness import query, scans_recorded
from fleet_helpers import assert_same_rows, node_id_of
from helpers_processes import STATE_TIMEOUT_S, TEST_TARGET, make_transcoder, wait_until
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ffrtmp.fleet import central

pytestmark = [pytest.mark.fleet, pytest.mark.slow]


def start_shipping_watch(
    spawn, tmp_path, name, cgroup_parent, ship_to, *, failpoints="", extra_config=""
):
    directory = tmp_path / name
    directory.mkdir()
    exe = make_transcoder(directory)
    config = directory / "watch.yaml"
    config.write_text(
        f"target_commands: [{TEST_TARGET}]\n"
        f"commands:\n  {TEST_TARGET}:\n    match: {{exe: '{exe}'}}\n"
        "scan_interval: 1s\n" + extra_config
    )
    db_path = directory / "node.db"
    log = open(directory / "watch.log", "wb")  # noqa: SIM115 - closed by the spawner's end
    env = {**os.environ, "FFRTMP_SHIP_TO": ship_to, "FFRTMP_FAILPOINTS": failpoints}
    daemon = spawn(
        [
            sys.executable,
            "-m",
            "ffrtmp.cli",
            "watch",
            "--db",
            str(db_path),
            "--watch-config",
            str(config),
            "--cgroup-parent",
            f"{cgroup_parent}/{name}",
            "--discovery",
            "poll",
            "--node-label",
            name,
            "--ship-interval",
            "0.3",
        ],
        wait_exec=False,
        env=env,
        stderr=log,
    )
    wait_until(lambda: scans_recorded(db_path), what=f"{name}'s first scan")
    return daemon, db_path, exe, directory / "watch.log"


def state_of(db_path: Path, pid: int) -> str | None:
    rows = query(db_path, "SELECT state FROM processes WHERE pid = ? ORDER BY id DESC", (pid,))
    return rows[0][0] if rows else None


def central_count(url: str, sql: str, **params) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()
    except Exception:
        return -1
    finally:
        engine.dispose()


def stop(daemon) -> None:
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=STATE_TIMEOUT_S) == 0


def test_two_daemons_ship_everything_once_across_a_partition(
    tmp_path, spawn, cgroup_hierarchy, real_cgroup_parent, central_db, postgres_server
):
    central.upgrade(central_db)
    a, db_a, exe_a, _ = start_shipping_watch(
        spawn,
        tmp_path,
        "edge-a",
        real_cgroup_parent,
        central_db,
        failpoints="governor.attach=EBUSY*2",  # the first attaches fail and are retried
    )
    b, db_b, exe_b, _ = start_shipping_watch(
        spawn, tmp_path, "edge-b", real_cgroup_parent, central_db
    )
    # Both nodes have shipped their start before the partition.
    wait_until(
        lambda: central_count(central_db, "SELECT count(*) FROM scans") >= 2,
        what="both daemons' first rows in the centre",
    )

    postgres_server.stop()
    try:
        # Partition: processes start, fail to attach (A's failpoint) and are retried, attach,
        # and die, while the centre is away.
        started = time.monotonic()
        jobs = [spawn([str(exe), "600"]) for exe in (exe_a, exe_a, exe_b, exe_b)]
        homes = (db_a, db_a, db_b, db_b)
        for job, db in zip(jobs, homes, strict=True):
            wait_until(lambda job=job, db=db: state_of(db, job.pid) == "attached", what="attached")
        attach_seconds = time.monotonic() - started
        for job in (jobs[0], jobs[3]):
            job.kill()
            job.wait()
        for job, db in ((jobs[0], db_a), (jobs[3], db_b)):
            wait_until(
                lambda job=job, db=db: state_of(db, job.pid) in ("exited", "vanished"),
                what="the death recorded locally",
            )
        assert a.poll() is None and b.poll() is None
    finally:
        postgres_server.start()
    # Local work went on at its usual pace: the shipper waits on the network, not the daemon.
    # (Two failed attaches and their retries, 1 s then 2 s apart, are part of A's time.)
    assert attach_seconds < 60
    assert query(db_a, "SELECT count(*) FROM error_events WHERE operation = 'attach'") == [(2,)]
    assert query(db_a, "SELECT count(*) FROM retry_items WHERE state = 'succeeded'") >= [(1,)]

    back = datetime.now(UTC).replace(tzinfo=None)
    for db in (db_a, db_b):
        node = node_id_of(db)
        wait_until(
            lambda node=node: (
                central_count(
                    central_db,
                    "SELECT count(*) FROM fleet_nodes WHERE node_id = :n AND pending_changes = 0 "
                    "AND last_contact_at > :back",
                    n=node,
                    back=back,
                )
                == 1
            ),
            what="catch-up after the partition",
        )
    # And shipping goes on as before: a process started now is in the centre, attached.
    late = spawn([str(exe_b), "600"])
    wait_until(
        lambda: (
            central_count(
                central_db,
                "SELECT count(*) FROM processes WHERE pid = :p AND state = 'attached'",
                p=late.pid,
            )
            == 1
        ),
        what="a process started after the partition, in the centre",
    )
    stop(a)
    stop(b)
    for db in (db_a, db_b):
        assert_same_rows(db, central_db)
    assert central_count(central_db, "SELECT count(*) FROM fleet_nodes") == 2


def test_a_dead_letter_requeued_centrally_is_retried_by_the_real_daemon(
    tmp_path, spawn, cgroup_hierarchy, real_cgroup_parent, central_db
):
    from click.testing import CliRunner

    from ffrtmp.cli import main

    central.upgrade(central_db)
    daemon, db_path, exe, _ = start_shipping_watch(
        spawn,
        tmp_path,
        "edge-r",
        real_cgroup_parent,
        central_db,
        failpoints="governor.attach=EBUSY*2",  # the attach and its one retry fail: dead letter
        extra_config="retry: {max_attempts: 1, initial_delay: 0.2s}\n",
    )
    job = spawn([str(exe), "600"])
    dead = "SELECT id FROM retry_items WHERE state = 'dead'"
    wait_until(lambda: central_count(central_db, dead) not in (None, -1), what="dead in the centre")
    retry_id = central_count(central_db, dead)
    asked = CliRunner().invoke(
        main,
        ["retries", "requeue", str(retry_id), "--node", "edge-r"],
        env={"FFRTMP_DB": central_db},
    )
    assert asked.exit_code == 0, asked.output
    # The node applies it, its retry attaches (the failpoint is spent), and the centre sees it.
    wait_until(lambda: state_of(db_path, job.pid) == "attached", what="attached on the node")
    outcome = (
        "SELECT count(*) FROM retry_items r JOIN processes p ON p.node_id = r.node_id "
        "AND p.id = r.process_id WHERE r.id = :r AND r.state = 'succeeded' "
        "AND p.state = 'attached'"
    )
    wait_until(lambda: central_count(central_db, outcome, r=retry_id) == 1, what="the outcome")
    assert (
        central_count(central_db, "SELECT count(*) FROM fleet_actions WHERE state = 'applied'") == 1
    )
    stop(daemon)
    assert_same_rows(db_path, central_db)


@pytest.mark.parametrize("kind", ["unreachable", "wrong password", "newer schema", "other kind"])
def test_a_bad_central_url_is_one_sentence_and_the_daemon_governs_on(
    kind, tmp_path, spawn, cgroup_hierarchy, real_cgroup_parent, central_db, postgres_server
):
    central.upgrade(central_db)
    database = make_url(central_db).database
    url, sentence = {
        "unreachable": ("postgresql+psycopg://nobody@127.0.0.1:1/x", "cannot be used: connection"),
        "wrong password": (
            postgres_server.password_url(database, "postgres", "wrong-pw-123"),
            "password authentication failed",
        ),
        "newer schema": (central_db, "has fleet schema revision c999, which this ffrtmp"),
        "other kind": ("mysql://u@127.0.0.1/db", "is not a PostgreSQL URL"),
    }[kind]
    if kind == "newer schema":
        postgres_server.admin_sql(
            "UPDATE alembic_version SET version_num = 'c999'", database=database
        )
    daemon, db_path, exe, log = start_shipping_watch(
        spawn, tmp_path, "edge", real_cgroup_parent, url
    )
    job = spawn([str(exe), "600"])
    wait_until(lambda: state_of(db_path, job.pid) == "attached", what="governing goes on")
    wait_until(lambda: sentence in log.read_text(), what="the one sentence in the log")
    stop(daemon)
    logged = log.read_text()
    assert "Traceback" not in logged
    assert "wrong-pw-123" not in logged
    errors = [line for line in logged.splitlines() if sentence in line]
    assert len(errors) == 1  # once, not once per attempt
