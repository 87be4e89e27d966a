"""A daemon whose start-up fails lets go of everything it opened and closes its run row."""

from __future__ import annotations

import os

import pytest
from daemon_harness import make_daemon, query, write_config

from ffrtmp import failpoints


def open_descriptors() -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # the descriptor listdir itself used
            pass
    return found


def test_a_failed_start_closes_its_run_row_and_its_descriptors(
    tmp_path, db_path, transcoder, real_cgroup_parent
):
    daemon = make_daemon(db_path, write_config(tmp_path, transcoder), real_cgroup_parent)
    daemon.install_signal_handlers()
    wakeup_pipes = {os.readlink(f"/proc/self/fd/{fd}") for fd in daemon._wakeup}
    begin_run = daemon.store.begin_run

    def begin_run_then_fail_the_next_database_step(**kwargs):
        run_id = begin_run(**kwargs)
        failpoints.configure("store.commit=EIO*1")  # the real failpoint, armed from here on
        return run_id

    daemon.store.begin_run = begin_run_then_fail_the_next_database_step
    try:
        with pytest.raises(OSError):
            daemon.run()
    finally:
        daemon.store.close()
    assert not daemon.listener.is_open
    assert not wakeup_pipes & set(open_descriptors()), "the wake-up pipe was left open"
    ((stopped_at, reason),) = query(db_path, "SELECT stopped_at, stop_reason FROM daemon_runs")
    assert stopped_at is not None
    assert reason.startswith("start-up failed: ")
