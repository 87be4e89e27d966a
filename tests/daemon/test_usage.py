"""Usage while running: the daemon samples governed jobs' cgroups onto their rows and sums
them per rule for /metrics; never per pid, never over a recorded exit."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from cgroup_hierarchy import JobCgroups
from click.testing import CliRunner
from daemon_harness import pump, query, start_watch, write_config
from helpers_processes import TEST_TARGET, wait_until
from prometheus_client.parser import text_string_to_metric_families

from ffrtmp.cgroups.live import LiveUsage, read_live_usage
from ffrtmp.cli import main
from ffrtmp.config import ConfigError, load_config
from ffrtmp.utctime import utc

# A real interpreter (not the pyenv shim) so that argv[0] survives the exec.
PYTHON = str(Path("/usr/bin/python3").resolve())
# Fresh 4 MiB mappings in a busy loop: their pages are charged to the cgroup it is in now.
BUSY = (
    "import mmap\n"
    "while True:\n"
    "    m = mmap.mmap(-1, 4 << 20)\n"
    "    m.write(bytes(4 << 20))\n"
    "    m.close()\n"
)


def busy_config(tmp_path: Path, token: str, extra: str = "") -> Path:
    return write_config(tmp_path, PYTHON, extra, cmdline_regex=token)


def spawn_busy(spawn, token: str):
    """A process of the suite's target that burns CPU and touches memory until it is killed."""
    return spawn([TEST_TARGET, "-c", BUSY, token], executable=PYTHON)


def row(db_path: Path, pid: int, columns: str) -> tuple:
    rows = query(db_path, f"SELECT {columns} FROM processes WHERE pid = ?", (pid,))
    return rows[0] if rows else ()


@pytest.mark.vm  # the cgroup v2 counters (cpu.stat usage_usec, memory.current, memory.peak)
def test_a_sample_puts_live_usage_on_the_row_and_never_over_the_recorded_exit(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, daemons
):
    token = f"usage-{uuid.uuid4().hex}"
    config = busy_config(tmp_path, token, "default_limits: {cpu_quota: 20, memory_limit: 256}\n")
    daemon = daemons(db_path, config, job_cgroups.parent, events=False)
    daemon.start(daemon.clock.now())
    busy = spawn_busy(spawn, token)
    pump(daemon, lambda: row(db_path, busy.pid, "state") == ("attached",), what="attached")
    (job_id,) = row(db_path, busy.pid, "job_id")
    assert row(db_path, busy.pid, "usage_sampled_at, cpu_seconds") == (None, None)

    # A 20 % quota on a busy loop: the kernel throttles it within a few periods, and
    # (slowly, on an emulated CPU) it writes its first 4 MiB mapping.
    def throttled_after_its_first_mapping() -> bool:
        daemon.usage.sample(daemon.clock.now())
        throttled, peak = row(db_path, busy.pid, "cpu_throttled_periods, peak_memory_bytes")
        return (throttled or 0) > 0 and (peak is None or peak >= 4 << 20)

    wait_until(
        throttled_after_its_first_mapping,
        what="a sample showing the job throttled, its first mapping charged",
    )
    sampled_at, cpu, current, peak, periods, throttled_periods, throttled_s, exited = row(
        db_path,
        busy.pid,
        "usage_sampled_at, cpu_seconds, memory_current_bytes, peak_memory_bytes, "
        "cpu_periods, cpu_throttled_periods, cpu_throttled_seconds, exited_at",
    )
    assert sampled_at is not None and exited is None
    live = read_live_usage(job_cgroups.version, job_cgroups.directories(job_id))
    assert 0 < cpu <= live.cpu_seconds  # the kernel's counter only grows
    assert 0 <= current <= 256 * 1024 * 1024
    assert peak is None or 4 << 20 <= peak <= 256 * 1024 * 1024
    assert 0 < throttled_periods <= periods <= live.cpu_periods
    assert 0 < throttled_s <= live.cpu_throttled_seconds

    shown = CliRunner().invoke(
        main, ["processes", "show", "--pid", str(busy.pid), "--json", "--db", str(db_path)]
    )
    assert shown.exit_code == 0, shown.output
    process = json.loads(shown.output)["process"]
    assert process["usage_sampled_at"].endswith("Z") and process["cpu_seconds"] == cpu
    assert process["cpu_throttled_periods"] == throttled_periods
    assert process["memory_current_bytes"] == current
    table = CliRunner().invoke(main, ["processes", "show", str(process["id"]), "--db", db_path])
    assert "cpu_throttled_seconds" in table.output and "usage_sampled_at" in table.output

    samples = [
        s
        for f in text_string_to_metric_families(daemon.metrics.render().decode())
        for s in f.samples
    ]
    metrics = {(s.name, s.labels.get("rule")): s.value for s in samples}
    assert metrics[("ffrtmp_governed_jobs", TEST_TARGET)] == 1
    assert metrics[("ffrtmp_governed_jobs", "other")] == 0
    assert metrics[("ffrtmp_governed_cpu_seconds_total", TEST_TARGET)] == pytest.approx(cpu)
    assert metrics[("ffrtmp_governed_memory_bytes", TEST_TARGET)] == current
    assert metrics[("ffrtmp_governed_cpu_throttled_seconds_total", TEST_TARGET)] > 0
    label_names = {name for s in samples for name in s.labels}
    assert not label_names & {"pid", "job_id", "process_id", "job"}

    busy.kill()
    busy.wait(timeout=30)
    pump(daemon, lambda: row(db_path, busy.pid, "state") == ("exited",), what="exit")
    (final_cpu,) = row(db_path, busy.pid, "cpu_seconds")
    assert final_cpu >= cpu
    # A sample read before the exit and written after it changes nothing.
    (process_id,) = row(db_path, busy.pid, "id")
    stale = LiveUsage(0.5, 1, 1, 1, 1, 0.5)
    assert daemon.store.record_usage([(process_id, stale)], now=utc(time.time())) == 0
    assert row(db_path, busy.pid, "cpu_seconds, memory_current_bytes") == (final_cpu, current)
    daemon.usage.sample(daemon.clock.now())
    assert daemon.usage.totals()[TEST_TARGET].jobs == 0
    assert daemon.usage.totals()[TEST_TARGET].cpu_seconds == pytest.approx(cpu)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_running_watch_samples_in_its_thread_and_serves_the_sums_per_rule(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups
):
    token = f"usage-{uuid.uuid4().hex}"
    port = free_port()
    config = busy_config(tmp_path, token, "scan_interval: 300ms\nusage_interval: 300ms\n")
    start_watch(spawn, db_path, config, job_cgroups.parent, "--http", f"127.0.0.1:{port}")
    busy = spawn_busy(spawn, token)
    wait_until(
        lambda: (row(db_path, busy.pid, "cpu_seconds") or (None,))[0] is not None,
        what="the daemon's thread to sample the running job",
    )
    first = row(db_path, busy.pid, "usage_sampled_at, cpu_seconds")
    wait_until(
        lambda: row(db_path, busy.pid, "usage_sampled_at, cpu_seconds")[1] > first[1],
        what="a later sample with more CPU time",
    )

    def scrape() -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return {f.name: f for f in text_string_to_metric_families(text)}

    wait_until(
        lambda: any(
            s.labels == {"rule": TEST_TARGET} and s.value == 1
            for s in scrape()["ffrtmp_governed_jobs"].samples
        ),
        what="/metrics to count the job under its rule",
    )
    families = scrape()
    cpu = {s.labels["rule"]: s.value for s in families["ffrtmp_governed_cpu_seconds"].samples}
    assert set(cpu) == {TEST_TARGET, "other"} and cpu[TEST_TARGET] > 0 and cpu["other"] == 0
    assert families["ffrtmp_processes_ungoverned"].samples[0].value == 0


@pytest.mark.parametrize(
    ("text", "seconds"), [("usage_interval: 0\n", 0.0), ("usage_interval: 1m\n", 60.0)]
)
def test_usage_interval_is_a_duration_and_zero_turns_sampling_off(tmp_path, text, seconds):
    path = tmp_path / "watch.yaml"
    path.write_text(text)
    assert load_config(path).usage_interval == seconds


def test_a_negative_usage_interval_names_the_line_and_key(tmp_path):
    path = tmp_path / "watch.yaml"
    path.write_text("usage_interval: -5s\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert "line 1: usage_interval must be a duration of zero or more, not '-5s'" in str(
        raised.value
    )


def test_live_usage_of_a_cgroup_that_is_gone_is_none(tmp_path):
    assert read_live_usage(1, [tmp_path / "no-such-job"]) is None
    assert read_live_usage(2, [tmp_path / "no-such-job"]) is None


def test_a_reload_turns_sampling_on_in_the_running_thread(
    tmp_path, db_path, spawn, job_cgroups: JobCgroups, daemons
):
    token = f"usage-{uuid.uuid4().hex}"
    config = busy_config(tmp_path, token, "usage_interval: 0\n")
    daemon = daemons(db_path, config, job_cgroups.parent, events=False)
    try:
        daemon.start(daemon.clock.now())
        daemon.usage.start()
        busy = spawn_busy(spawn, token)
        pump(daemon, lambda: row(db_path, busy.pid, "state") == ("attached",), what="attached")
        assert daemon.usage.interval == 0
        assert row(db_path, busy.pid, "usage_sampled_at") == (None,)  # off: never sampled
        config.write_text(config.read_text().replace("usage_interval: 0", "usage_interval: 200ms"))
        daemon.reload(daemon.clock.now())
        assert daemon.usage.interval == 0.2
        wait_until(
            lambda: row(db_path, busy.pid, "usage_sampled_at")[0] is not None,
            what="the running thread's first sample after the reload",
        )
        (recorded,) = query(db_path, "SELECT config FROM daemon_runs")[0]
        assert json.loads(recorded)["usage_interval"] == "200ms"
    finally:
        daemon.usage.stop()
