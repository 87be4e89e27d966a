"""kill -9 at random moments: the retry queue, the process rows and the database survive.

`ffrtmp watch` runs as a subprocess against real cgroups (below this test's own: v1 on the host,
v2 in the VM for the tests marked vm), with the failpoint governor.attach=EBUSY*inf in most runs
so that every attach fails and the retry queue does the work. Copies of `sleep` (named as the
suite's own target, helpers_processes.TEST_TARGET) start and end before, during and between the
runs; the daemon is SIGKILLed at seeded random moments and started again, and after every kill
the database is read back with plain SQL.

The seed is printed (pytest shows it with -s or on failure); FFRTMP_CRASH_SEED=<n> replays the
same schedule of starts, kills and process exits. The daemon's own timing is not replayed.

On cgroup v2 in the VM (`make test-v2`) only the adoption after a SIGKILL runs (marked vm): each
start of `ffrtmp watch` there spends some 20 s importing under the emulated CPU, so the random
kills would all land in start-up, and the other targeted tests, about the store rather than the
hierarchy, would cost minutes for nothing v2 changes.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cgroup_hierarchy import JobCgroups
from daemon_harness import write_config
from ffrtmp_commands import FFRTMP
from helpers_processes import STATE_TIMEOUT_S, wait_until

from ffrtmp.identity import ProcessIdentity, current_identity
from ffrtmp.lifecycle import REASON_DAEMON_DOWN

SEED_ENV_VAR = "FFRTMP_CRASH_SEED"
KILLS = 20
MAX_ATTEMPTS = 4
FAST_RETRIES = (
    "scan_interval: 200ms\n"
    f"retry: {{initial_delay: 100ms, max_delay: 300ms, max_attempts: {MAX_ATTEMPTS}}}\n"
)
ATTACH_FAILS = "governor.attach=EBUSY*inf"
MOST_PROCESSES = 6
# A claimed item has its attempt counted already; its claim is cleared once the failure is in.
FIRST_RETRY_DONE = "SELECT state, attempt FROM retry_items WHERE claimed_until IS NULL"


def read(db_path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of `sql`, or [] while the daemon has not yet created the database or its tables."""
    if not db_path.exists():
        return []
    con = sqlite3.connect(db_path, timeout=10)
    try:
        return con.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        con.close()


def run_count(db_path: Path) -> int:
    rows = read(db_path, "SELECT count(*) FROM daemon_runs")
    return rows[0][0] if rows else 0


def scan_count(db_path: Path) -> int:
    rows = read(db_path, "SELECT count(*) FROM scans")
    return rows[0][0] if rows else 0


@dataclass
class Workload:
    child: subprocess.Popen
    identity: ProcessIdentity

    @property
    def pid(self) -> int:
        return self.identity.pid


class Fleet:
    """The test's copies of `sleep`: started through `spawn`, ended by their pid and reaped at once,
    so that a process that ends while no daemon runs leaves no zombie to read an exit code from."""

    def __init__(self, spawn, exe: Path) -> None:
        self.spawn = spawn
        self.exe = exe
        self.alive: list[Workload] = []
        self.ended: list[Workload] = []

    def start(self) -> Workload:
        child = self.spawn([self.exe, "600"])
        identity = current_identity(child.pid)
        assert identity is not None, f"pid {child.pid} ended at once"
        workload = Workload(child, identity)
        self.alive.append(workload)
        return workload

    def end(self, workload: Workload) -> None:
        os.kill(workload.pid, signal.SIGKILL)
        workload.child.wait(timeout=10)
        self.alive.remove(workload)
        self.ended.append(workload)


class Watch:
    """One `ffrtmp watch` subprocess at a time; every run's log goes to one file."""

    def __init__(
        self, spawn, tmp_path: Path, db_path: Path, config: Path, cgroup_parent: str
    ) -> None:
        self.spawn = spawn
        self.db_path = db_path
        self.log_path = tmp_path / "daemon.log"
        self.argv = [
            *FFRTMP,
            "watch",
            "--db",
            str(db_path),
            "--watch-config",
            str(config),
            "--cgroup-parent",
            cgroup_parent,
            "--discovery",
            "events",
        ]
        self.process: subprocess.Popen | None = None
        self.runs = 0

    def start(self, failpoints: str | None) -> None:
        assert self.process is None
        env = dict(os.environ)
        env.pop("FFRTMP_FAILPOINTS", None)
        if failpoints:
            env["FFRTMP_FAILPOINTS"] = failpoints
        self.runs += 1
        with open(self.log_path, "a") as log:
            log.write(f"--- run {self.runs}, FFRTMP_FAILPOINTS={failpoints or ''}\n")
            log.flush()
            self.process = self.spawn(self.argv, wait_exec=False, stderr=log, env=env)

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        code = self.process.wait(timeout=10)
        self.process = None
        assert code == -signal.SIGKILL, f"the daemon ended by itself ({code}):\n{self.log_tail()}"

    def stop(self) -> int:
        self.process.terminate()
        code = self.process.wait(timeout=STATE_TIMEOUT_S)
        self.process = None
        return code

    def log_tail(self, lines: int = 30) -> str:
        kept = [
            line[:200]
            for line in self.log_path.read_text().splitlines()
            if "effective configuration" not in line
        ]
        return "\n".join(kept[-lines:])


def check_invariants(db_path: Path, last_attempts: dict[int, int], context: str) -> None:
    """What must hold after any kill, whatever the daemon was doing."""
    if not read(db_path, "SELECT name FROM sqlite_master WHERE name = 'retry_items'"):
        return  # killed before its schema existed
    assert read(db_path, "PRAGMA integrity_check") == [("ok",)], context
    assert (
        read(
            db_path,
            "SELECT process_id, count(*) FROM retry_items GROUP BY process_id HAVING count(*) > 1",
        )
        == []
    ), context
    assert (
        read(
            db_path,
            "SELECT boot_id, pid, start_ticks, count(*) FROM processes GROUP BY 1, 2, 3 "
            "HAVING count(*) > 1",
        )
        == []
    ), context
    for process_id, attempt, max_attempts, state in read(
        db_path, "SELECT process_id, attempt, max_attempts, state FROM retry_items"
    ):
        before = last_attempts.get(process_id, 0)
        assert attempt >= before, f"{context}: item of process {process_id} went {before}→{attempt}"
        assert attempt <= max_attempts, (
            f"{context}: item of process {process_id} ({state}) made {attempt} attempts "
            f"of at most {max_attempts}"
        )
        last_attempts[process_id] = attempt
    # A pending item and the process state 'retrying' are written in one transaction.
    mismatched = read(
        db_path,
        "SELECT p.id, p.state, p.exited_at FROM retry_items r JOIN processes p "
        "ON p.id = r.process_id WHERE r.state = 'pending' "
        "AND (p.state != 'retrying' OR p.exited_at IS NOT NULL)",
    )
    assert mismatched == [], f"{context}: pending items of processes {mismatched}"
    dead_mismatch = read(
        db_path,
        "SELECT p.id, p.state FROM retry_items r JOIN processes p ON p.id = r.process_id "
        "WHERE r.state = 'dead' AND p.state != 'dead'",
    )
    assert dead_mismatch == [], f"{context}: dead items of live rows {dead_mismatch}"


def open_row(db_path: Path, workload: Workload) -> tuple[int, str] | None:
    """(process id, state) of the workload's row if it is recorded as still running."""
    rows = read(
        db_path,
        "SELECT id, state FROM processes WHERE pid = ? AND start_ticks = ? AND exited_at IS NULL",
        (workload.pid, workload.identity.start_ticks),
    )
    return rows[0] if rows else None


def check_closed_while_down(db_path: Path, ended_while_down: dict[int, str], context: str) -> None:
    """Rows of processes that ended while no daemon ran: closed by the next start's recovery,
    with no exit code (nobody could see it) and the reason."""
    for process_id, state_then in ended_while_down.items():
        ((state, exited_at, code, signo, reason),) = read(
            db_path,
            "SELECT state, exited_at, exit_code, exit_signal, exit_reason FROM processes "
            "WHERE id = ?",
            (process_id,),
        )
        expected_state = "dead" if state_then == "dead" else "exited"
        assert (state, code, signo, reason) == (expected_state, None, None, REASON_DAEMON_DOWN), (
            f"{context}: process {process_id} ({state_then} when it ended) is now "
            f"{(state, exited_at, code, signo, reason)}"
        )
        assert exited_at is not None, context


def final_problems(db_path: Path, fleet: Fleet, job_cgroups: JobCgroups) -> list[str]:
    """Everything that is not yet as it must end; empty once the last daemon has settled."""
    problems = []
    for workload in fleet.alive:
        rows = read(
            db_path,
            "SELECT p.id, p.state, p.job_id, r.state, r.attempt, r.final_reason "
            "FROM processes p LEFT JOIN retry_items r ON r.process_id = p.id "
            "WHERE p.pid = ? AND p.start_ticks = ?",
            (workload.pid, workload.identity.start_ticks),
        )
        if len(rows) != 1:
            problems.append(f"running pid {workload.pid} has rows {rows}")
            continue
        (process_id, state, job_id, item_state, attempt, final_reason) = rows[0]
        in_job = job_cgroups.job_of(workload.pid)
        if state == "dead":
            if (item_state, attempt, in_job) != ("dead", MAX_ATTEMPTS, None) or not (
                final_reason or ""
            ).startswith("max attempts reached"):
                problems.append(f"dead process {process_id}: {rows[0]}, in cgroup {in_job}")
        elif state == "attached":
            if item_state not in (None, "succeeded") or in_job != job_id:
                problems.append(f"attached process {process_id}: {rows[0]}, in cgroup {in_job}")
        else:
            problems.append(f"running process {process_id} is {state}: {rows[0]}")
    for workload in fleet.ended:
        rows = read(
            db_path,
            "SELECT p.id, p.state, p.exited_at, p.exit_signal, p.exit_reason, r.state, "
            "r.attempt, r.final_reason FROM processes p "
            "LEFT JOIN retry_items r ON r.process_id = p.id "
            "WHERE p.pid = ? AND p.start_ticks = ?",
            (workload.pid, workload.identity.start_ticks),
        )
        if not rows:
            continue  # ended before any daemon saw it
        if len(rows) != 1:
            problems.append(f"ended pid {workload.pid} has rows {rows}")
            continue
        (process_id, state, exited_at, signo, reason, item_state, attempt, final_reason) = rows[0]
        if exited_at is None or state not in ("exited", "vanished", "dead"):
            problems.append(f"ended process {process_id} not closed: {rows[0]}")
        elif signo != signal.SIGKILL and reason is None:
            problems.append(f"ended process {process_id} has neither its signal nor a reason")
        item_ok = (
            item_state in (None, "succeeded")
            or (item_state, final_reason) == ("cancelled", "target_exited")
            or (item_state, attempt) == ("dead", MAX_ATTEMPTS)
        )
        if not item_ok:
            problems.append(f"ended process {process_id} has item {rows[0][5:]}")
    leftover = read(
        db_path, "SELECT id, state FROM processes WHERE state IN ('retrying', 'discovered')"
    )
    if leftover:
        problems.append(f"rows still in flight: {leftover}")
    governing = {
        job_id
        for (job_id,) in read(db_path, "SELECT job_id FROM processes WHERE state = 'attached'")
    }
    stray = sorted(set(job_cgroups.names()) - governing)
    if stray:
        problems.append(f"job cgroups of no attached process left behind: {stray}")
    return problems


# Schedules that once found a defect, replayed every run. 2447335742: SIGKILL after the move
# and before its record left a governed process to be dead-lettered by later failing attempts.
KNOWN_SEEDS = (2447335742,)


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.parametrize("known_seed", [None, *KNOWN_SEEDS], ids=["random", *map(str, KNOWN_SEEDS)])
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder, known_seed
):
    seed = known_seed or int(os.environ.get(SEED_ENV_VAR) or random.SystemRandom().randrange(2**32))
    print(f"crash test seed {seed}: {SEED_ENV_VAR}={seed} replays this schedule")
    rng = random.Random(seed)
    config = write_config(tmp_path, transcoder, FAST_RETRIES)
    watch = Watch(spawn, tmp_path, db_path, config, job_cgroups.parent)
    fleet = Fleet(spawn, transcoder)
    last_attempts: dict[int, int] = {}
    ended_while_down: dict[int, str] = {}  # process id -> its state when its process ended
    phases: collections.Counter[str] = collections.Counter()
    kills_after_the_row = 0
    for _ in range(3):
        fleet.start()

    for kill_number in range(1, KILLS + 1):
        if len(fleet.alive) < MOST_PROCESSES and rng.random() < 0.5:
            fleet.start()
        scans_before = scan_count(db_path)
        runs_before = run_count(db_path)
        # Now and then a run where attaches work: rows get attached and later adopted.
        failpoints = None if rng.random() < 0.15 else ATTACH_FAILS
        # Half the kills count from the start of the process (start-up, recovery, first
        # scan), half from the run's row (discovery, retries, exits), whatever the load.
        from_spawn = rng.random() < 0.5
        delay = rng.uniform(0.05, 0.8)
        action_at = rng.uniform(0, delay)
        action = rng.random()
        watch.start(failpoints)
        if not from_spawn:
            wait_until(
                lambda n=runs_before: run_count(db_path) > n,
                timeout=STATE_TIMEOUT_S,
                what="its row",
            )
            kills_after_the_row += 1
        time.sleep(action_at)
        if action < 0.4 and len(fleet.alive) < MOST_PROCESSES + 1:
            fleet.start()
        elif action < 0.7 and fleet.alive:
            fleet.end(rng.choice(fleet.alive))
        time.sleep(max(0.0, delay - action_at))
        watch.kill()

        since = "its start" if from_spawn else "its run row"
        context = f"seed {seed}, kill {kill_number} {delay:.3f}s after {since}; {watch.log_path}"
        check_invariants(db_path, last_attempts, context)
        if scan_count(db_path) > scans_before:  # that run got past its recovery
            check_closed_while_down(db_path, ended_while_down, context)
            ended_while_down.clear()
            phases["after the first scan"] += 1
        elif run_count(db_path) > runs_before:
            phases["in start-up, after the run row"] += 1
        else:
            phases["before the run row"] += 1
        if fleet.alive and rng.random() < 0.35:
            workload = rng.choice(fleet.alive)
            row = open_row(db_path, workload)
            fleet.end(workload)
            if row is not None:
                ended_while_down[row[0]] = row[1]

    # One more workload that lives through the last run, so at least one item is certain to
    # go all the way to the dead-letter list whatever the seed did to the others.
    fleet.start()
    scans_before = scan_count(db_path)
    watch.start(ATTACH_FAILS)
    wait_until(
        lambda: scan_count(db_path) > scans_before, timeout=STATE_TIMEOUT_S, what="the last start"
    )
    context = f"seed {seed}, after the last start; log {watch.log_path}"
    check_closed_while_down(db_path, ended_while_down, context)
    try:
        wait_until(lambda: not final_problems(db_path, fleet, job_cgroups), timeout=STATE_TIMEOUT_S)
    except AssertionError:
        pass  # the assertion below says what is wrong
    assert final_problems(db_path, fleet, job_cgroups) == [], f"{context}\n{watch.log_tail()}"
    assert watch.stop() == 0
    check_invariants(db_path, last_attempts, context)
    runs = read(db_path, "SELECT stop_reason FROM daemon_runs ORDER BY id")
    # A run killed before it opened the database leaves no row; the last one stopped cleanly.
    assert runs[-1] == ("stopped",) and all(r == (None,) for r in runs[:-1]), context
    assert kills_after_the_row < len(runs) <= KILLS + 1, context
    print(f"kills: {dict(phases)}")
    dead = read(db_path, "SELECT count(*) FROM retry_items WHERE state = 'dead'")[0][0]
    assert dead >= 1, f"{context}: no item ever reached the dead-letter list"


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.vm
def test_attached_processes_are_adopted_after_sigkill(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder
):
    config = write_config(tmp_path, transcoder, "scan_interval: 200ms\n")
    watch = Watch(spawn, tmp_path, db_path, config, job_cgroups.parent)
    fleet = Fleet(spawn, transcoder)
    workloads = [fleet.start() for _ in range(3)]

    def rows() -> dict[int, tuple]:
        return {
            pid: (process_id, state, job_id, exited_at, code, signo, reason)
            for process_id, pid, state, job_id, exited_at, code, signo, reason in read(
                db_path,
                "SELECT id, pid, state, job_id, exited_at, exit_code, exit_signal, exit_reason "
                "FROM processes",
            )
        }

    watch.start(None)
    wait_until(
        lambda: [r[1] for r in rows().values()] == ["attached"] * 3,
        timeout=STATE_TIMEOUT_S,
        what="three processes attached",
    )
    watch.kill()
    before = rows()
    for w in workloads:
        # The daemon is gone; its workloads stay governed.
        assert job_cgroups.job_of(w.pid) == before[w.pid][2]
    victim, survivors = workloads[0], workloads[1:]
    victim_paths = json.loads(
        read(db_path, "SELECT cgroup_paths FROM processes WHERE pid = ?", (victim.pid,))[0][0]
    )
    fleet.end(victim)

    scans_before = scan_count(db_path)
    watch.start(None)
    wait_until(
        lambda: scan_count(db_path) > scans_before, timeout=STATE_TIMEOUT_S, what="the restart"
    )
    after = rows()
    assert len(after) == 3 and read(db_path, "SELECT count(*) FROM processes") == [(3,)]
    process_id, state, _, exited_at, code, signo, reason = after[victim.pid]
    assert (state, code, signo, reason) == ("exited", None, None, REASON_DAEMON_DOWN)
    assert exited_at is not None
    for w in survivors:
        assert after[w.pid][:3] == before[w.pid][:3]  # same row, still attached
        assert after[w.pid][3] is None
        assert job_cgroups.job_of(w.pid) == before[w.pid][2]
    adopted = read(
        db_path,
        "SELECT p.pid, count(*) FROM process_events e JOIN processes p ON p.id = e.process_id "
        "WHERE e.kind = 'adopted' GROUP BY p.pid",
    )
    assert sorted(adopted) == sorted((w.pid, 1) for w in survivors)
    # The ended process's job cgroup is removed once its usage is read.
    wait_until(
        lambda: not any(Path(p).exists() for p in victim_paths),
        timeout=STATE_TIMEOUT_S,
        what="the victim's job cgroups removed",
    )

    # A clean stop lets go of the workloads (detached): they run on in their job cgroups, as
    # processes ffrtmp did not start must (nothing wrote cgroup.kill).
    assert watch.stop() == 0
    assert sorted(r[1] for r in rows().values()) == ["detached", "detached", "exited"]
    for w in survivors:
        assert w.child.poll() is None
        assert job_cgroups.job_of(w.pid) == before[w.pid][2]
    assert read(db_path, "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.slow
@pytest.mark.root
def test_processes_detached_by_a_clean_stop_are_attached_again_by_the_next_start(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder
):
    config = write_config(tmp_path, transcoder, "scan_interval: 200ms\n")
    watch = Watch(spawn, tmp_path, db_path, config, job_cgroups.parent)
    fleet = Fleet(spawn, transcoder)
    workloads = [fleet.start() for _ in range(2)]

    def states() -> list[str]:
        return [state for (state,) in read(db_path, "SELECT state FROM processes ORDER BY pid")]

    watch.start(None)
    wait_until(lambda: states() == ["attached"] * 2, timeout=STATE_TIMEOUT_S, what="both attached")
    jobs = {w.pid: job_cgroups.job_of(w.pid) for w in workloads}
    assert watch.stop() == 0
    assert states() == ["detached"] * 2

    scans_before = scan_count(db_path)
    watch.start(None)
    wait_until(
        lambda: scan_count(db_path) > scans_before, timeout=STATE_TIMEOUT_S, what="the restart"
    )
    assert states() == ["attached"] * 2
    assert {w.pid: job_cgroups.job_of(w.pid) for w in workloads} == jobs
    assert read(db_path, "SELECT count(*) FROM processes") == [(2,)]
    watch.kill()


@pytest.mark.slow
@pytest.mark.root
def test_a_dead_lettered_process_that_ends_while_the_daemon_is_down_is_closed(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder
):
    config = write_config(
        tmp_path, transcoder, "retry: {initial_delay: 100ms, max_delay: 100ms, max_attempts: 1}\n"
    )
    watch = Watch(spawn, tmp_path, db_path, config, job_cgroups.parent)
    fleet = Fleet(spawn, transcoder)
    workload = fleet.start()
    watch.start(ATTACH_FAILS)
    wait_until(
        lambda: read(db_path, "SELECT state FROM processes") == [("dead",)],
        timeout=STATE_TIMEOUT_S,
        what="the process dead-lettered",
    )
    watch.kill()
    fleet.end(workload)  # ends and is reaped while no daemon runs

    scans_before = scan_count(db_path)
    watch.start(ATTACH_FAILS)
    wait_until(
        lambda: scan_count(db_path) > scans_before, timeout=STATE_TIMEOUT_S, what="the restart"
    )
    watch.kill()
    row = read(db_path, "SELECT state, exit_code, exit_signal, exit_reason FROM processes")
    assert row == [("dead", None, None, REASON_DAEMON_DOWN)], watch.log_tail()
    assert read(db_path, "SELECT count(*) FROM processes WHERE exited_at IS NULL") == [(0,)]


@pytest.mark.slow
@pytest.mark.root
def test_a_last_attempt_cut_short_by_a_crash_is_not_made_again(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder
):
    """The daemon counts an attempt (claim_retry) before it runs it. A SIGKILL between that
    count and the attempt's recorded failure is a window of milliseconds, so the state it leaves
    is made here with the daemon's own store call, as the killed daemon made it."""
    from ffrtmp.database import open_for_writing
    from ffrtmp.store import Store

    # Retry 1 after 100ms, retry 2 (the last) 10s later: time to step in before it.
    config = write_config(
        tmp_path,
        transcoder,
        "retry: {initial_delay: 100ms, multiplier: 100, max_delay: 1h, max_attempts: 2}\n",
    )
    watch = Watch(spawn, tmp_path, db_path, config, job_cgroups.parent)
    fleet = Fleet(spawn, transcoder)
    fleet.start()
    watch.start(ATTACH_FAILS)
    wait_until(
        lambda: read(db_path, FIRST_RETRY_DONE) == [("pending", 1)],
        timeout=STATE_TIMEOUT_S,
        what="the first retry made and its failure recorded",
    )
    watch.kill()
    store = Store(open_for_writing(db_path))
    try:
        due = store.next_retry_at()
        ((retry_id,),) = read(db_path, "SELECT id FROM retry_items")
        assert store.claim_retry(retry_id, now=due, claim_seconds=60) == 2  # the last attempt
    finally:
        store.close()

    scans_before = scan_count(db_path)
    watch.start(ATTACH_FAILS)
    wait_until(
        lambda: scan_count(db_path) > scans_before, timeout=STATE_TIMEOUT_S, what="the restart"
    )
    assert read(db_path, "SELECT state, attempt FROM retry_items") == [("dead", 2)], (
        watch.log_tail()
    )
    assert read(db_path, "SELECT state FROM processes") == [("dead",)]
    watch.kill()


@pytest.mark.slow
@pytest.mark.root
def test_an_empty_job_cgroup_left_by_a_crash_mid_attempt_is_removed(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder
):
    """A failed attach removes the job cgroup it created; a SIGKILL between the mkdir and
    that rmdir leaves it empty. The directory is made here as the killed daemon left it."""
    config = write_config(
        tmp_path,
        transcoder,
        "retry: {initial_delay: 100ms, multiplier: 100, max_delay: 1h, max_attempts: 2}\n",
    )
    watch = Watch(spawn, tmp_path, db_path, config, job_cgroups.parent)
    fleet = Fleet(spawn, transcoder)
    workload = fleet.start()
    watch.start(ATTACH_FAILS)
    wait_until(
        lambda: read(db_path, FIRST_RETRY_DONE) == [("pending", 1)],
        timeout=STATE_TIMEOUT_S,
        what="the first retry made and its failure recorded",
    )
    watch.kill()
    assert job_cgroups.names() == []  # every failed attempt cleaned up after itself
    ((job_id,),) = read(db_path, "SELECT job_id FROM processes")
    strays = job_cgroups.directories(job_id)
    for stray in strays:
        stray.mkdir()

    scans_before = scan_count(db_path)
    watch.start(ATTACH_FAILS)
    wait_until(
        lambda: scan_count(db_path) > scans_before, timeout=STATE_TIMEOUT_S, what="the restart"
    )
    fleet.end(workload)
    wait_until(
        lambda: read(db_path, "SELECT count(*) FROM processes WHERE exited_at IS NULL") == [(0,)],
        timeout=STATE_TIMEOUT_S,
        what="the exit recorded",
    )
    watch.kill()
    assert not any(stray.exists() for stray in strays), "the empty job cgroup a crash left stayed"
    assert job_cgroups.names() == []
