"""A process whose main thread ends first (pthread_exit) while another thread runs on: the
kernel sends the thread-group leader's exit event at once, but the process ends later, with the
status its last thread gives. ffrtmp must record that end, not the leader's."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import parts
import pytest
from daemon_harness import query, start_watch
from helpers_processes import TEST_TARGET, wait_until

from ffrtmp.identity import read_stat

SOURCE = r"""
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

static void pause_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0) {}
}

static void *worker(void *unused) {
    (void)unused;
    pause_ms(1800);
    exit(4);
}

int main(void) {
    pthread_t thread;
    pthread_create(&thread, NULL, worker, NULL);
    pause_ms(300);
    pthread_exit(NULL);
}
"""
WORKER_OUTLIVES_LEADER_S = 1.5


@pytest.fixture
def leader_exits_first(tmp_path: Path) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        parts.skip(parts.THREADS, "no C compiler")
    source = tmp_path / "leader.c"
    source.write_text(SOURCE)
    binary = tmp_path / "bin" / TEST_TARGET  # the suite's target, matched by its exe path
    binary.parent.mkdir()
    subprocess.run([compiler, "-O1", "-pthread", "-o", binary, source], check=True, timeout=120)
    return binary


def test_the_real_end_and_status_are_recorded_not_the_main_threads(
    tmp_path, db_path, spawn, leader_exits_first, real_cgroup_parent
):
    config = tmp_path / "watch.yaml"
    config.write_text(
        f"target_commands: [{TEST_TARGET}]\n"
        f"commands:\n  {TEST_TARGET}:\n    match: {{exe: '{leader_exits_first}'}}\n"
        "scan_interval: 1s\n"
    )
    start_watch(spawn, db_path, config, real_cgroup_parent, "--discovery", "events")
    process = spawn([leader_exits_first])
    state = "SELECT state, exit_code, exited_at FROM processes WHERE pid = ?"
    wait_until(
        lambda: query(db_path, state, (process.pid,))[:1] == [("attached", None, None)],
        timeout=30,
        what="the process attached",
    )
    wait_until(
        lambda: read_stat(process.pid).state == "Z", timeout=30, what="its main thread's end"
    )
    leader_ended = datetime.now(UTC)

    assert process.wait(timeout=60) == 4
    wait_until(
        lambda: query(db_path, state, (process.pid,))[0][0] == "exited",
        timeout=30,
        what="the exit recorded",
    )
    ((_, exit_code, exited_at),) = query(db_path, state, (process.pid,))
    assert exit_code == 4
    recorded_end = datetime.fromisoformat(exited_at).replace(tzinfo=UTC)
    ran_on = (recorded_end - leader_ended).total_seconds()
    assert ran_on > WORKER_OUTLIVES_LEADER_S * 0.5, (
        f"recorded as ended {ran_on:.2f}s after its main thread, not at its real end"
    )
