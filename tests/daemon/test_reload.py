"""SIGHUP: every key that a running daemon can change applies at once, the recorded effective
configuration follows, and processes the old filters skipped are judged again."""

from __future__ import annotations

import json

from daemon_harness import query
from helpers_processes import TEST_TARGET

BEFORE = """\
target_commands: [{target}]
commands:
  {target}:
    match: {{exe: '{exe}'}}
filters:
  blocked_dirs: ['{blocked}']
scan_interval: 10s
discovery: poll
health: {{degraded_attach_failures: 10, snapshot_interval: 1m}}
retry: {{max_attempts: 3}}
"""
AFTER = """\
target_commands: [{target}]
commands:
  {target}:
    match: {{exe: '{exe}'}}
    limits: {{cpu_weight: 300}}
scan_interval: 5s
discovery: events
cgroup: {{version: v2}}
health: {{degraded_attach_failures: 3, snapshot_interval: 30s}}
retry: {{max_attempts: 7}}
"""


def test_a_reload_applies_what_it_can_and_judges_skipped_processes_again(
    tmp_path, db_path, spawn, transcoder, real_cgroup_parent, daemons
):
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    config = tmp_path / "watch.yaml"
    config.write_text(BEFORE.format(target=TEST_TARGET, exe=transcoder, blocked=blocked))
    daemon = daemons(db_path, config, real_cgroup_parent, events=False)
    now = daemon.clock.now()
    daemon.start(now)
    child = spawn([transcoder, "600"], cwd=blocked)
    daemon.full_scan(now)
    state = "SELECT state, requested_cpu_weight FROM processes WHERE pid = ?"
    assert query(db_path, state, (child.pid,)) == [("skipped", None)]

    config.write_text(AFTER.format(target=TEST_TARGET, exe=transcoder))
    daemon.reload(now + 1)
    assert daemon.next_scan_at <= now + 1  # the new filters apply to what runs now
    daemon.step(now + 1)

    assert query(db_path, state, (child.pid,)) == [("attached", 300)]
    kinds = query(
        db_path,
        "SELECT kind FROM process_events e JOIN processes p ON p.id = e.process_id "
        "WHERE p.pid = ? ORDER BY e.id",
        (child.pid,),
    )
    assert ("reconsidered",) in kinds and kinds[-1] == ("limits_applied",)
    assert daemon.config.scan_interval == 5.0
    assert daemon.health.thresholds.degraded_attach_failures == 3
    assert daemon.snapshots.interval == 30.0
    assert daemon.attacher.policy.max_attempts == 7
    # Restart-only keys keep what the running daemon set up.
    assert daemon.config.discovery == "poll"
    assert daemon.config.cgroup.version == "auto"
    ((recorded,),) = query(db_path, "SELECT config FROM daemon_runs")
    recorded = json.loads(recorded)
    assert recorded["scan_interval"] == "5s"
    assert recorded["filters"]["blocked_dirs"] == []
    assert recorded["discovery"] == "poll"
    assert recorded["commands"][TEST_TARGET]["limits"]["cpu_weight"] == 300


def test_a_bad_file_on_reload_keeps_the_running_configuration(
    tmp_path, db_path, transcoder, real_cgroup_parent, daemons
):
    config = tmp_path / "watch.yaml"
    config.write_text(BEFORE.format(target=TEST_TARGET, exe=transcoder, blocked=tmp_path))
    daemon = daemons(db_path, config, real_cgroup_parent, events=False)
    daemon.start(daemon.clock.now())
    running = daemon.config
    config.write_text("scan_interval: soon\n")
    daemon.reload(daemon.clock.now())
    assert daemon.config is running
    ((kind,),) = query(db_path, "SELECT operation FROM error_events")
    assert kind == "config"
