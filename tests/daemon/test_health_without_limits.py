"""A daemon that cannot apply limits (not root, no cgroup filesystem) only observes: its health
says so, degraded with the reason its log gives, rather than healthy."""

from __future__ import annotations

import json
import subprocess
import sys

from daemon_harness import close, make_daemon, write_config

from ffrtmp.cgroups import create_governor
from ffrtmp.daemon_lock import DaemonLock
from ffrtmp.states import HealthStatus


def test_a_daemon_that_applies_no_limits_is_degraded_and_says_why(tmp_path, db_path):
    # A folder that is no cgroup filesystem: the governor's check() refuses it, as it refuses
    # /sys/fs/cgroup to a user who is not root.
    not_cgroups = tmp_path / "not-cgroups"
    not_cgroups.mkdir()
    config = write_config(tmp_path, "/nonexistent/ffrtmp-test-matches-nothing")
    daemon = make_daemon(
        db_path, config, None, events=False, governor=create_governor(root=not_cgroups)
    )
    try:
        assert daemon.unavailable  # the premise: this daemon applies no limits
        now = daemon.clock.now()
        daemon.start(now)
        daemon.full_scan(now, trigger="startup")
        daemon.health_tick(now)
        report = daemon.health.evaluate(now)
        assert report.status == HealthStatus.DEGRADED
        assert report.reasons == (f"no resource limits are applied: {daemon.unavailable}",)
        assert report.loop_status == HealthStatus.HEALTHY  # the watchdog has nothing to restart
        stored = daemon.store.last_health()
        assert (stored.status, stored.reasons) == ("degraded", list(report.reasons))
        # What `ffrtmp health` reads while this daemon runs: the test process holds the
        # database's lock for it, as `ffrtmp watch` does (ffrtmp.service).
        lock = DaemonLock.acquire(db_path)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "ffrtmp.cli", "health", "--json", "--db", str(db_path)],
                capture_output=True,
                text=True,
                timeout=120,
            )
        finally:
            lock.release()
        shown = json.loads(done.stdout)
        assert shown["status"] == "degraded", done.stdout
        assert any("no resource limits are applied" in reason for reason in shown["reasons"])
        assert done.returncode == 1
    finally:
        close(daemon)
