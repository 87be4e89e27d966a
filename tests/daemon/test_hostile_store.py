"""A store that refuses writes must not stop the daemon from governing (issue 14).

Each fault is made for real: a second sqlite3 connection holding `BEGIN IMMEDIATE` past the
busy timeout, a tmpfs of a few MB filled to the last block, a squatter on the HTTP port. The
daemon is real (in-process and stepped by hand, or a real `ffrtmp watch` process), and so are
its processes and cgroups. Each test asserts that the daemon lives, that the processes sit in
their cgroups, and that nothing is lost: the rows appear once the store takes writes again.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from daemon_harness import close, make_daemon, pump, query, start_watch, write_config
from ffrtmp_commands import ffrtmp
from helpers_processes import STATE_TIMEOUT_S, wait_until

from ffrtmp import defaults
from ffrtmp.daemon_lock import DaemonLock
from ffrtmp.http import start_http_server
from ffrtmp.states import HealthStatus

STORE_FAILING = "database cannot be written"


def exited_rows(db_path: Path, pid: int) -> list[tuple]:
    return query(
        db_path,
        "SELECT state, exit_signal FROM processes WHERE pid = ? AND exited_at IS NOT NULL",
        (pid,),
    )


def attached_row(db_path: Path, pid: int) -> list[tuple]:
    return query(
        db_path, "SELECT job_id FROM processes WHERE pid = ? AND attached_at IS NOT NULL", (pid,)
    )


def get(url: str) -> tuple[int, bytes, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=STATE_TIMEOUT_S) as response:
            return response.status, response.read(), time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), time.monotonic() - started


@contextlib.contextmanager
def write_lock(db_path: Path):
    """What an operator with `sqlite3` open does: a write transaction held open."""
    holder = sqlite3.connect(db_path, timeout=STATE_TIMEOUT_S, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield holder
    finally:
        with contextlib.suppress(sqlite3.Error):
            holder.execute("ROLLBACK")
        holder.close()


def in_job_cgroup(job_cgroups, pid: int) -> str | None:
    """The job cgroup `pid` is in; None also while an attach is moving it (on cgroup v1 it
    joins the cpu hierarchy a moment before the memory one)."""
    try:
        return job_cgroups.job_of(pid)
    except AssertionError:
        return None


def end(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=STATE_TIMEOUT_S)


# --- 1 and 3: a write lock held past the busy timeout -------------------------------------


def test_an_exit_under_a_held_write_lock_is_recorded_once_the_lock_goes(
    tmp_path, db_path, spawn, transcoder, job_cgroups, daemons
):
    daemon = daemons(db_path, write_config(tmp_path, transcoder), job_cgroups.parent)
    server = start_http_server("127.0.0.1:0", daemon.view, daemon.metrics)
    try:
        daemon.start(daemon.clock.now())
        first = spawn([transcoder, "3600"])
        pump(daemon, lambda: attached_row(db_path, first.pid), what="the first attach")
        with write_lock(db_path):
            locked_at = time.monotonic()
            end(first)
            second = spawn([transcoder, "3600"])
            # The daemon lives through the exit and governs the newcomer without the database.
            pump(
                daemon,
                lambda: (
                    not daemon.lifecycle.by_pid.get(first.pid)
                    and in_job_cgroup(job_cgroups, second.pid)
                ),
                what="the exit handled and the second process governed under the lock",
            )
            assert time.monotonic() - locked_at > defaults.SQLITE_BUSY_TIMEOUT_MS / 1000
            assert exited_rows(db_path, first.pid) == []  # nothing could be written yet
            report = daemon.health.evaluate(daemon.clock.now())
            assert report.status == HealthStatus.DEGRADED
            assert any(STORE_FAILING in reason for reason in report.reasons)
            assert report.errors_by_type.get("transient", 0) >= 1
            # /healthz and /metrics answer from memory, not after the lock's busy timeout.
            status, body, took = get(f"{server.url}/healthz")
            assert (status, json.loads(body)["status"]) == (200, "warn")
            assert STORE_FAILING in json.loads(body)["output"]
            assert took < defaults.SQLITE_BUSY_TIMEOUT_MS / 1000
            status, text, took = get(f"{server.url}/metrics")
            assert status == 200 and took < defaults.SQLITE_BUSY_TIMEOUT_MS / 1000
            kept = [
                line for line in text.decode().splitlines() if line.startswith("ffrtmp_store_w")
            ]
            assert len(kept) == 1 and float(kept[0].split()[1]) == len(daemon.outbox) > 0
            # Past stale_scan_after of refused writes, degraded turns unhealthy.
            later = daemon.clock.now() + daemon.health.thresholds.stale_scan_after + 1
            assert daemon.health.evaluate(later).status == HealthStatus.UNHEALTHY
            # The newcomer has no row yet: a usage sample has nothing to write for it (and
            # no lock to wait out and fail on).
            assert daemon.usage.sample(daemon.clock.now()) == 0
        pump(
            daemon,
            lambda: exited_rows(db_path, first.pid) and attached_row(db_path, second.pid),
            what="the kept writes to land once the lock is gone",
        )
        assert exited_rows(db_path, first.pid) == [("exited", signal.SIGTERM)]
        assert attached_row(db_path, second.pid) == [(job_cgroups.job_of(second.pid),)]
        stored = query(db_path, "SELECT error_type FROM error_events WHERE operation = 'store'")
        assert stored == [("transient",)]
        assert daemon.health.evaluate(daemon.clock.now()).status == HealthStatus.HEALTHY
        assert len(daemon.outbox) == 0
    finally:
        server.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_watch_answers_healthz_at_once_and_governs_under_a_long_write_lock(
    tmp_path, db_path, spawn, transcoder, job_cgroups
):
    address = f"127.0.0.1:{free_port()}"
    config = write_config(tmp_path, transcoder, extra="scan_interval: 1s\n")
    first = spawn([transcoder, "3600"])
    watch = start_watch(spawn, db_path, config, job_cgroups.parent, "--http", address)
    wait_until(lambda: attached_row(db_path, first.pid), what="the first attach")
    latencies = []
    with write_lock(db_path):
        locked_at = time.monotonic()
        end(first)
        second = spawn([transcoder, "3600"])
        # Three busy timeouts of the lock: the loop tries, fails, and tries again meanwhile.
        while time.monotonic() - locked_at < 3 * defaults.SQLITE_BUSY_TIMEOUT_MS / 1000:
            status, body, took = get(f"http://{address}/healthz")
            latencies.append(took)
        assert watch.poll() is None
        wait_until(lambda: in_job_cgroup(job_cgroups, second.pid), what="the second governed")
        assert (status, json.loads(body)["status"]) == (200, "warn")
        assert STORE_FAILING in json.loads(body)["output"]
        assert exited_rows(db_path, first.pid) == []
    # Answered from memory: never once did a request wait out the busy timeout.
    assert max(latencies) < defaults.SQLITE_BUSY_TIMEOUT_MS / 1000, max(latencies)
    wait_until(
        lambda: exited_rows(db_path, first.pid) and attached_row(db_path, second.pid),
        what="the kept writes to land once the lock is gone",
    )
    assert exited_rows(db_path, first.pid) == [("exited", signal.SIGTERM)]
    watch.send_signal(signal.SIGTERM)
    assert watch.wait(timeout=STATE_TIMEOUT_S) == 0


# --- 2: a full disk -------------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path, root):
    """A tmpfs of a few MB, mounted for the test and unmounted after it."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", mountpoint], check=True
    )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", mountpoint], check=False)


def fill(directory: Path) -> Path:
    """Write zeros to a file until the filesystem says ENOSPC; the file is returned."""
    filler = directory / "filler"
    with open(filler, "wb") as f:
        block = b"\0" * 65536
        try:
            while True:
                f.write(block)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def truncate_wal(db_path: Path) -> None:
    """Empty the WAL, so the daemon's next write must grow it (and meet the full disk)."""
    con = sqlite3.connect(db_path)
    try:
        assert con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    finally:
        con.close()


def test_a_full_disk_leaves_governance_working_and_loses_nothing(
    tmp_path, small_tmpfs, spawn, transcoder, job_cgroups, daemons
):
    db_path = small_tmpfs / "ffrtmp.db"
    config = write_config(tmp_path, transcoder)
    daemon = daemons(db_path, config, job_cgroups.parent)
    daemon.start(daemon.clock.now())
    first = spawn([transcoder, "3600"])
    pump(daemon, lambda: attached_row(db_path, first.pid), what="the first attach")
    truncate_wal(db_path)
    filler = fill(small_tmpfs)
    end(first)
    second = spawn([transcoder, "3600"])
    pump(
        daemon,
        lambda: (
            not daemon.lifecycle.by_pid.get(first.pid) and in_job_cgroup(job_cgroups, second.pid)
        ),
        what="the exit handled and the second process governed on the full disk",
    )
    assert exited_rows(db_path, first.pid) == []
    report = daemon.health.evaluate(daemon.clock.now())
    assert report.status == HealthStatus.DEGRADED
    assert any(STORE_FAILING in reason for reason in report.reasons)
    assert report.errors_by_type.get("resource", 0) >= 1  # SQLITE_FULL is a resource error
    filler.unlink()
    pump(
        daemon,
        lambda: exited_rows(db_path, first.pid) and attached_row(db_path, second.pid),
        what="the kept writes to land once there is room",
    )
    assert exited_rows(db_path, first.pid) == [("exited", signal.SIGTERM)]
    stored = query(db_path, "SELECT error_type FROM error_events WHERE operation = 'store'")
    assert stored == [("resource",)]


def watch_argv(db_path: Path, config: Path, parent: str) -> list:
    return [sys.executable, "-m", "ffrtmp.cli", "watch", "--db", db_path] + [
        "--watch-config",
        config,
        "--cgroup-parent",
        parent,
    ]


@pytest.fixture
def full_disk_after_a_clean_stop(tmp_path, small_tmpfs, transcoder, job_cgroups):
    """A database whose daemon stopped (schema, lock file), then a disk filled to the end."""
    db_path = small_tmpfs / "ffrtmp.db"
    config = write_config(tmp_path, transcoder)
    close(make_daemon(db_path, config, job_cgroups.parent, events=False))
    DaemonLock.acquire(db_path).release()
    return db_path, config


def test_watch_refuses_in_one_sentence_when_a_full_disk_leaves_sqlite_no_room(
    full_disk_after_a_clean_stop, small_tmpfs, job_cgroups
):
    db_path, config = full_disk_after_a_clean_stop
    filler = fill(small_tmpfs)
    try:
        # No -shm file is left after a clean stop, and SQLite cannot make one: not even a read.
        done = subprocess.run(
            watch_argv(db_path, config, job_cgroups.parent), capture_output=True, text=True
        )
    finally:
        filler.unlink()
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: database {db_path} cannot be read: disk I/O error: the filesystem holding it is "
        "full (SQLite needs room for its -wal and -shm files beside it); free space there"
    ], done.stderr


def test_watch_started_on_a_full_disk_governs_and_records_once_there_is_room(
    full_disk_after_a_clean_stop, tmp_path, small_tmpfs, spawn, transcoder, job_cgroups
):
    db_path, config = full_disk_after_a_clean_stop
    # An operator's reader keeps SQLite's -shm file (and so the database readable); the WAL is
    # emptied so that any write must grow it.
    reader = sqlite3.connect(db_path)
    try:
        assert reader.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
        filler = fill(small_tmpfs)
        workload = spawn([transcoder, "3600"])
        stderr = tmp_path / "watch.stderr"
        with open(stderr, "wb") as err:
            watch = spawn(watch_argv(db_path, config, job_cgroups.parent), False, stderr=err)
        wait_until(
            lambda: in_job_cgroup(job_cgroups, workload.pid) or watch.poll() is not None,
            what="the workload governed by a daemon started on a full disk",
        )
        assert watch.poll() is None, stderr.read_text()
        assert attached_row(db_path, workload.pid) == []
        filler.unlink()
        wait_until(
            lambda: attached_row(db_path, workload.pid),
            what="the workload's row once there is room",
        )
        watch.send_signal(signal.SIGTERM)
        assert watch.wait(timeout=STATE_TIMEOUT_S) == 0
    finally:
        reader.close()
    log = stderr.read_text()
    assert "Traceback" not in log
    assert "the database cannot be written (database or disk is full [resource])" in log
    runs = query(db_path, "SELECT stop_reason FROM daemon_runs ORDER BY id DESC LIMIT 1")
    assert runs == [("stopped",)]


# --- 8: another user took the HTTP port first -----------------------------------------------

SQUAT = """
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(3600)
"""


def test_a_squatted_http_port_leaves_the_daemon_governing_and_is_bound_once_freed(
    tmp_path, db_path, spawn, transcoder, job_cgroups, root
):
    # A process of uid 65534 (nobody) listens on the port first.
    squatter = spawn(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3"]
        + ["-c", SQUAT],
        wait_exec=False,
        stdout=subprocess.PIPE,
    )
    port = int(squatter.stdout.readline())
    assert Path(f"/proc/{squatter.pid}").stat().st_uid == 65534
    address = f"127.0.0.1:{port}"
    config = write_config(tmp_path, transcoder)
    workload = spawn([transcoder, "3600"])
    stderr = tmp_path / "watch.stderr"
    with open(stderr, "wb") as err:
        watch = spawn(
            watch_argv(db_path, config, job_cgroups.parent) + ["--http", address], False, stderr=err
        )
    wait_until(
        lambda: in_job_cgroup(job_cgroups, workload.pid) or watch.poll() is not None,
        what="the workload governed while the HTTP port is taken",
    )
    assert watch.poll() is None, stderr.read_text()
    wait_until(lambda: newest_health(db_path), what="a health snapshot")
    status, reasons = newest_health(db_path)
    assert status == "degraded"
    assert f"HTTP endpoint {address} not served: Address already in use" in reasons
    # `ffrtmp health` judges the snapshot again and keeps what only the daemon could say.
    health = ffrtmp("health", "--db", db_path, "--json")
    assert health.returncode == 1, health.stderr
    assert (
        f"HTTP endpoint {address} not served: Address already in use"
        in json.loads(health.stdout)["reasons"]
    )
    # The squatter goes; the daemon binds the port on one of its next tries.
    squatter.kill()
    squatter.wait(timeout=STATE_TIMEOUT_S)
    wait_until(lambda: served_by_ffrtmp(address), what="the daemon to bind the freed port")
    code, body, _ = get(f"http://{address}/healthz")
    assert code == 200 and json.loads(body)["status"] == "pass"
    assert watch.poll() is None
    watch.send_signal(signal.SIGTERM)
    assert watch.wait(timeout=STATE_TIMEOUT_S) == 0
    assert "Traceback" not in stderr.read_text()


def newest_health(db_path: Path) -> tuple[str, list[str]] | None:
    if not db_path.exists():
        return None
    try:
        rows = query(db_path, "SELECT status, reasons FROM health_snapshots ORDER BY id DESC")
    except sqlite3.OperationalError:
        return None
    return (rows[0][0], json.loads(rows[0][1])) if rows else None


def served_by_ffrtmp(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/healthz", timeout=5) as response:
            return response.headers["Server"].startswith("ffrtmp/")
    except (OSError, urllib.error.URLError):
        return False


# --- 4: one bad row, one failing migration, a damaged file ----------------------------------


def one_sentence_error(done: subprocess.CompletedProcess) -> str:
    """The one `Error:` line of a refused command, which must print no traceback."""
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


@pytest.fixture
def recorded_db(tmp_path, db_path, transcoder, real_cgroup_parent) -> Path:
    """A database a daemon wrote and stopped on: its run, a scan and a health snapshot."""
    daemon = make_daemon(
        db_path, write_config(tmp_path, transcoder), real_cgroup_parent, events=False
    )
    try:
        now = daemon.clock.now()
        daemon.start(now)
        daemon.full_scan(now)
        daemon.health_tick(now)
        daemon.shutdown(now)
    finally:
        daemon.store.close()
    return db_path


def test_a_snapshot_whose_details_are_not_json_is_skipped_and_counted(
    recorded_db, tmp_path, transcoder, real_cgroup_parent
):
    con = sqlite3.connect(recorded_db)
    with con:
        con.execute("UPDATE health_snapshots SET details = 'not json {'")
    con.close()
    health = ffrtmp("health", "--db", recorded_db, "--json")
    assert "Traceback" not in health.stderr
    assert health.returncode == 2  # the daemon stopped: unhealthy, judged all the same
    assert json.loads(health.stdout)["snapshot_id"] == 1
    assert "1 stored value(s) were not valid JSON" in health.stderr
    config = write_config(tmp_path, transcoder)
    watch = ffrtmp(
        "watch", "--once", "--db", recorded_db, "--watch-config", config,
        "--cgroup-parent", real_cgroup_parent,
    )  # fmt: skip
    assert watch.returncode == 0, watch.stderr
    assert "Traceback" not in watch.stderr
    assert query(recorded_db, "SELECT count(*) FROM daemon_runs WHERE stopped_at IS NOT NULL") == [
        (2,)
    ]


def test_an_upgrade_that_keeps_failing_keeps_one_backup_copy(tmp_path):
    from ffrtmp import database, migrate
    from ffrtmp.revisions import head_revision

    db_path = tmp_path / "state" / "ffrtmp.db"
    db_path.parent.mkdir(mode=0o700)
    old = database.make_engine(database.resolve(db_path))
    migrate.upgrade(old, "0001")
    with old.begin() as conn:
        # An object in the way of revision 0002's index: every upgrade attempt fails on it.
        conn.exec_driver_sql("CREATE INDEX ix_processes_discovered_at ON scans (started_at)")
    old.dispose()
    for _ in range(3):
        done = ffrtmp("db", "upgrade", "--db", db_path)
        assert done.returncode == 1
        assert "already exists" in one_sentence_error(done)
    copies = sorted(p.name for p in db_path.parent.glob("ffrtmp.db.bak-*"))
    assert copies == [f"ffrtmp.db.bak-0001-to-{head_revision()}"]


def test_db_check_runs_sqlites_integrity_check_on_a_byte_flipped_file(recorded_db):
    assert ffrtmp("db", "check", "--db", recorded_db).returncode == 0
    # Flip bytes inside the pages of the scans table's index: the schema still reads well.
    con = sqlite3.connect(recorded_db)
    (root,) = con.execute(
        "SELECT rootpage FROM sqlite_master WHERE type = 'index' AND tbl_name = 'scans'"
    ).fetchone()
    (page_size,) = con.execute("PRAGMA page_size").fetchone()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    with open(recorded_db, "r+b") as f:
        f.seek((root - 1) * page_size + 8)
        f.write(b"\xff" * 16)
    done = ffrtmp("db", "check", "--db", recorded_db)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr  # one line, however many problems
    assert one_sentence_error(done).startswith(
        "Error: the database fails SQLite's integrity check: "
    )
    # A read command on the damaged page: one sentence, no traceback.
    listed = ffrtmp("scans", "list", "--db", recorded_db)
    assert "Traceback" not in listed.stderr


# --- 13: messages without SQL, a read-only mount, another user's folder ---------------------


def test_a_store_error_message_carries_no_sql_block_or_link(db_path, store):
    from ffrtmp.errors import classify

    with write_lock(db_path), pytest.raises(Exception) as caught:
        store.touch_seen([1], now=store_now())
    message = classify(caught.value).message
    assert message == "database is locked"
    assert "[SQL" not in message and "sqlalche.me" not in message


def test_an_operator_action_on_a_locked_database_is_one_sentence_without_sql(recorded_db):
    with write_lock(recorded_db):
        done = ffrtmp("retries", "discard", "1", "--db", recorded_db)
    assert done.returncode == 1
    assert one_sentence_error(done) == (
        f"Error: database {recorded_db} cannot be opened for writing: database is locked"
    )
    assert "[SQL" not in done.stderr and "sqlalche.me" not in done.stderr


def store_now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


@pytest.fixture
def read_only_view(tmp_path, recorded_db, root):
    """The folder of a database a daemon wrote, bind-mounted read-only elsewhere."""
    view = tmp_path / "ro"
    view.mkdir()
    subprocess.run(["mount", "--bind", recorded_db.parent, view], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", view], check=True)
        yield view / recorded_db.name
    finally:
        subprocess.run(["umount", "-l", view], check=False)


def test_read_commands_read_a_wal_database_on_a_read_only_mount(read_only_view):
    with pytest.raises(OSError) as caught:
        (read_only_view.parent / "probe").touch()
    assert caught.value.errno == errno.EROFS
    listed = ffrtmp("scans", "list", "--db", read_only_view, "--json")
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 1
    health = ffrtmp("health", "--db", read_only_view, "--json")
    assert json.loads(health.stdout)["snapshot_id"] == 1, health.stderr
    assert ffrtmp("db", "check", "--db", read_only_view).returncode == 0


def test_read_commands_leave_no_files_in_a_folder_that_is_not_theirs(recorded_db, root):
    # root: gives the folder to another user
    folder = recorded_db.parent
    os.chown(folder, 65534, 65534)
    os.chown(recorded_db, 65534, 65534)
    before = sorted(p.name for p in folder.iterdir())
    assert before == [recorded_db.name]  # the daemon stopped: no -wal, no -shm
    for command in (("scans", "list"), ("health",), ("processes", "list"), ("db", "check")):
        done = ffrtmp(*command, "--db", recorded_db)
        assert "Traceback" not in done.stderr
        assert sorted(p.name for p in folder.iterdir()) == before, command


def test_watch_serves_health_on_a_unix_socket_that_no_other_user_can_take_first(
    tmp_path, db_path, spawn, transcoder, job_cgroups
):
    import http.client
    import socket
    import stat

    path = tmp_path / "run" / "http.sock"
    path.parent.mkdir(mode=0o700)
    config = write_config(tmp_path, transcoder)
    workload = spawn([transcoder, "3600"])
    watch = start_watch(spawn, db_path, config, job_cgroups.parent, "--http", f"unix:{path}")
    wait_until(lambda: attached_row(db_path, workload.pid), what="the workload governed")
    wait_until(path.exists, what="the socket")
    assert stat.S_ISSOCK(path.lstat().st_mode)
    assert stat.S_IMODE(path.lstat().st_mode) == 0o660
    client = socket.socket(socket.AF_UNIX)
    client.connect(str(path))
    connection = http.client.HTTPConnection("localhost", timeout=STATE_TIMEOUT_S)
    connection.sock = client
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["status"] == "pass"
    finally:
        connection.close()
    watch.send_signal(signal.SIGTERM)
    assert watch.wait(timeout=STATE_TIMEOUT_S) == 0
    assert not path.exists()  # removed with the server
