"""A step of the wall clock (NTP correcting a node that booted with a wrong date) changes no
schedule: scans keep their interval, a retry stays due its delay after the failure, health
neither goes stale nor hides a stall, min_runtime counts the process's real age, and stored
start times stay true to the wall clock in force.

Real daemon loop steps, real processes and cgroups. Only the wall clock is faked: stepping the
machine's own needs CAP_SYS_TIME and would move the clock of every other process here, so the
daemon is given a clock whose wall reading the test moves; its monotonic reading is the real one.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cgroup_hierarchy import JobCgroups
from daemon_harness import pump, query, write_config
from helpers_processes import STATE_TIMEOUT_S

from ffrtmp import failpoints
from ffrtmp.clock import Moment, SystemClock

HOUR = 3600.0
DAY = 86400.0
RETRY_DELAY_S = 3.0


class SteppableClock(SystemClock):
    """The system's clocks, with a wall clock that the test steps by `wall_step` seconds."""

    def __init__(self) -> None:
        super().__init__()
        self.wall_step = 0.0

    def wall(self) -> float:
        return super().wall() + self.wall_step


def stored_time(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def retry_attempts(db_path) -> tuple[str, int]:
    return query(db_path, "SELECT state, attempt FROM retry_items")[0]


def scans(db_path) -> int:
    return query(db_path, "SELECT count(*) FROM scans")[0][0]


def retry_due(db_path, clock):
    """The stored due time of the retry, as a moment, judged against the wall clock as it
    stands now."""
    next_at = stored_time(query(db_path, "SELECT next_attempt_at FROM retry_items")[0][0])
    return clock.now().at_wall(next_at)


def started_at_of(db_path, pid: int) -> float:
    return stored_time(
        query(db_path, "SELECT started_at FROM processes WHERE pid = ?", (pid,))[0][0]
    )


def test_scans_retries_health_and_start_times_ride_out_wall_clock_steps(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder, daemons
):
    # Two failed attaches, each retried RETRY_DELAY_S later (no jitter, no growth).
    failpoints.configure("governor.attach=EAGAIN*2")
    config = write_config(
        tmp_path,
        transcoder,
        "scan_interval: 1s\n"
        f"retry: {{initial_delay: {RETRY_DELAY_S}s, multiplier: 1, jitter: 0}}\n"
        "health: {stale_scan_after: 30s}\n",
    )
    clock = SteppableClock()
    daemon = daemons(db_path, config, job_cgroups.parent, events=False, clock=clock)
    first = spawn([transcoder, "60"])
    spawned_at = clock.wall()
    daemon.start(clock.now())
    scanned_at = clock.now()
    daemon.full_scan(scanned_at, trigger="startup")
    assert retry_attempts(db_path) == ("pending", 0)
    due = retry_due(db_path, clock)
    assert abs(due.seconds_since(scanned_at + RETRY_DELAY_S)) < 0.5
    assert abs(started_at_of(db_path, first.pid) - spawned_at) < 1.0

    # Back one hour: on the wall clock the retry is now due in an hour and one scan's due
    # time lies an hour ahead; neither may wait for it.
    clock.wall_step = -HOUR
    seen: dict[int, Moment] = {}

    def attempt_seen(number: int):
        def check() -> bool:
            if retry_attempts(db_path)[1] >= number:
                seen.setdefault(number, clock.now())
                return True
            return False

        return check

    scans_before = scans(db_path)
    pump(daemon, attempt_seen(1), what="the first retry after a step back of an hour")
    assert due - 0.05 <= seen[1] < due + STATE_TIMEOUT_S
    # It failed again (the second EAGAIN): the next one is stored due RETRY_DELAY_S after
    # that attempt, on the wall clock as it now stands.
    due = retry_due(db_path, clock)
    assert seen[1] - 1.0 < due <= seen[1] + RETRY_DELAY_S + 0.05
    assert scans(db_path) > scans_before + 1, "the scans went on at their interval"

    # Forward one day: the wall clock says the retry is a day overdue; it is not.
    clock.wall_step = DAY
    pump(daemon, attempt_seen(2), what="the second retry after a step forward of a day")
    assert due - 0.05 <= seen[2] < due + STATE_TIMEOUT_S, "not at once: the clock jumped"
    assert retry_attempts(db_path) == ("succeeded", 2)
    assert job_cgroups.job_of(first.pid) is not None

    # Health: a day on the wall clock is no day without a scan, and the scans go on.
    scans_before = scans(db_path)
    pump(daemon, lambda: scans(db_path) >= scans_before + 2, what="two more scans")
    report = daemon.health.evaluate(clock.now())
    assert report.status == "healthy", report.reasons
    assert report.seconds_since_last_successful_scan < 5
    daemon.health_tick(clock.now() + daemon.snapshots.interval)  # a periodic snapshot
    snapshot = query(db_path, "SELECT taken_at, last_scan_at FROM health_snapshots ORDER BY id")
    taken_at, last_scan_at = (stored_time(t) for t in snapshot[-1])
    # Stored as wall times of the clock in force, a day ahead of the real one.
    assert abs(last_scan_at - clock.wall()) < 5 and last_scan_at <= taken_at + 1

    # A process started after the steps: its start is read against the wall clock in force.
    second = spawn([transcoder, "60"])
    spawned_at = clock.wall()
    pump(
        daemon,
        lambda: job_cgroups.job_of(second.pid) is not None,
        what="the second process attached",
    )
    assert abs(started_at_of(db_path, second.pid) - spawned_at) < 1.0


def test_min_runtime_counts_the_process_age_not_the_wall_clock(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, transcoder, daemons
):
    config = write_config(tmp_path, transcoder, "scan_interval: 1s\nfilters: {min_runtime: 2s}\n")
    clock = SteppableClock()
    daemon = daemons(db_path, config, job_cgroups.parent, events=False, clock=clock)
    daemon.start(clock.now())
    child = spawn([transcoder, "60"])
    spawned = clock.now()
    daemon.full_scan(clock.now())
    assert job_cgroups.job_of(child.pid) is None, "deferred: younger than min_runtime"
    # Back an hour: on the wall clock the process would start in the future for an hour.
    clock.wall_step = -HOUR
    pump(
        daemon,
        lambda: job_cgroups.job_of(child.pid) is not None,
        what="the attach once the process is 2 s old",
    )
    assert clock.now().seconds_since(spawned) >= 2.0 - 0.05
    state = query(db_path, "SELECT state FROM processes WHERE pid = ?", (child.pid,))
    assert state == [("attached",)]
