"""A process that ended while no daemon ran ended at a moment nobody saw: its run_seconds is
what is known (from its start to the last time it was seen alive), not that plus the downtime
until the next daemon closed it."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta

from daemon_harness import close, make_daemon, query, write_config

from ffrtmp.candidate import Candidate
from ffrtmp.cgroups import create_governor
from ffrtmp.database import open_for_writing
from ffrtmp.identity import current_identity
from ffrtmp.lifecycle import REASON_DAEMON_DOWN
from ffrtmp.store import Store
from ffrtmp.utctime import utc


def _stored(moment: datetime) -> str:
    """A time as the database stores it (ffrtmp.utctime.UTCDateTime: naive UTC text)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def test_run_seconds_of_a_process_that_ended_unseen_ends_when_it_was_last_seen(
    tmp_path, db_path, spawn, transcoder
):
    # A real process, recorded by "an earlier daemon", then ended while none ran.
    child = spawn([transcoder, "600"])
    identity = current_identity(child.pid)
    store = Store(open_for_writing(db_path))
    try:
        candidate = Candidate(identity, "ffmpeg", ("ffmpeg", "600"), 1, "ffmpeg")
        process_id, _ = store.register(
            candidate, job_id="auto-ffmpeg-unseen", limits=None, now=utc(time.time())
        )
    finally:
        store.close()
    child.kill()
    child.wait()
    # That daemon saw it last an hour ago, two hours after it started; then it stopped.
    now = datetime.now(UTC)
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "UPDATE processes SET started_at = ?, discovered_at = ?, last_seen_at = ? WHERE id = ?",
            (
                _stored(now - timedelta(hours=3)),
                _stored(now - timedelta(hours=3)),
                _stored(now - timedelta(hours=1)),
                process_id,
            ),
        )
    conn.close()

    # The next daemon (one that applies no limits: the test needs no cgroups) closes it.
    not_cgroups = tmp_path / "not-cgroups"
    not_cgroups.mkdir()
    config = write_config(tmp_path, "/nonexistent/ffrtmp-test-matches-nothing")
    daemon = make_daemon(
        db_path, config, None, events=False, governor=create_governor(root=not_cgroups)
    )
    try:
        daemon.start(daemon.clock.now())
    finally:
        close(daemon)
    ((state, reason, run_seconds, exited_at),) = query(
        db_path,
        "SELECT state, exit_reason, run_seconds, exited_at FROM processes WHERE id = ?",
        (process_id,),
    )
    assert (state, reason) == ("exited", REASON_DAEMON_DOWN)
    assert abs(run_seconds - 2 * 3600) < 1  # not the 3 hours up to its closing
    # Its end is still recorded as when it was found ended.
    assert datetime.fromisoformat(exited_at).replace(tzinfo=UTC) >= now
