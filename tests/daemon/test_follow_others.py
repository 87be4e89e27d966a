"""Processes governed by another writer (`ffrtmp attach`) while the daemon runs are followed
to their end, however late that writer's commit lands."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

from candidates import make_candidate
from daemon_harness import pump, query, write_config

from ffrtmp.database import open_for_writing
from ffrtmp.identity import current_identity
from ffrtmp.limits import Limits
from ffrtmp.store import Store
from ffrtmp.utctime import utc


def test_an_attach_committed_long_after_it_was_stamped_is_still_followed(
    tmp_path, db_path, spawn, transcoder, real_cgroup_parent, daemons
):
    # The rule names ffprobe: the daemon itself never attaches the ffmpeg below.
    config = write_config(tmp_path, transcoder, "scan_interval: 200ms\n", command="ffprobe")
    daemon = daemons(db_path, config, real_cgroup_parent, events=False)
    other = Store(open_for_writing(db_path))
    try:
        daemon.start(daemon.clock.now())
        daemon.full_scan(daemon.clock.now())
        child = spawn([transcoder, "600"])
        identity = current_identity(child.pid)
        candidate = make_candidate(
            identity=identity, argv=("ffmpeg", "600"), ppid=os.getpid(), rule="manual"
        )
        # `ffrtmp attach` stamps attached_at when it starts; its commit may wait for the write
        # lock (busy timeout), or the machine may stall: here it lands a minute later.
        stamped = utc(time.time()) - timedelta(seconds=60)
        process_id, _ = other.register(
            candidate, job_id="manual-ffmpeg-late", limits=Limits(), now=stamped
        )
        other.record_attached(
            process_id, cgroup_version=1, cgroup_paths=(), applied=Limits(), now=stamped
        )
        daemon.full_scan(daemon.clock.now())
        assert daemon.lifecycle.is_followed(identity)

        os.kill(child.pid, signal.SIGKILL)
        pump(
            daemon,
            lambda: (
                query(db_path, "SELECT state FROM processes WHERE id = ?", (process_id,))
                == [("exited",)]
            ),
            what="its exit recorded",
        )
        ((exit_signal,),) = query(
            db_path, "SELECT exit_signal FROM processes WHERE id = ?", (process_id,)
        )
        assert exit_signal == signal.SIGKILL
    finally:
        other.close()
