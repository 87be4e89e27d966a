"""The systemd notify protocol against a real AF_UNIX datagram socket standing in for systemd.

The notifier reads a daemon through its read-only view (ffrtmp.daemon.view.DaemonView), built
here from a real HealthTracker and a real SQLite store; the full daemon is tested elsewhere.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from ffrtmp.clock import system_now
from ffrtmp.daemon.view import DaemonView
from ffrtmp.health import HealthThresholds, HealthTracker
from ffrtmp.identity import current_identity
from ffrtmp.lifecycle import Followed
from ffrtmp.sd_notify import Notifier, summary


def view_of(
    health: HealthTracker, store=None, followed: tuple[Followed, ...] = (), **given
) -> DaemonView:
    """The view a daemon with this tracker, store and followed processes gives its readers."""
    return DaemonView.of(
        health,
        retry_depths=store.retry_depths if store is not None else None,
        followed=lambda: followed,
        **given,
    )


class FakeClock:
    """Monotonic time the test moves by hand, for the watchdog's rate limit."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def systemd(tmp_path: Path):
    """The receiving end of NOTIFY_SOCKET: a bound datagram socket."""
    path = tmp_path / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.settimeout(1.0)
    try:
        yield SimpleNamespace(path=str(path), socket=receiver)
    finally:
        receiver.close()


def received(receiver: socket.socket) -> list[str]:
    """Every datagram waiting on the socket now."""
    messages = []
    receiver.setblocking(False)
    try:
        while True:
            messages.append(receiver.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        receiver.settimeout(1.0)
    return messages


def healthy_tracker() -> HealthTracker:
    now = system_now()
    health = HealthTracker(HealthThresholds(), started_at=now - 10)
    health.record_scan(True, now - 2)
    return health


def healthy_daemon(store=None, followed: tuple[Followed, ...] = ()) -> DaemonView:
    return view_of(healthy_tracker(), store, followed)


def test_ready_sends_ready_and_a_status_line(systemd, store):
    before = system_now()
    ident = current_identity(os.getpid())
    followed = tuple(Followed(pid, ident, f"auto-ffmpeg-{pid}", governed=True) for pid in (1, 2, 3))
    daemon = healthy_daemon(store, followed)
    notifier = Notifier(systemd.path)
    notifier.ready(daemon)
    # By a busy machine, between the scan and the status:
    held_up = system_now().seconds_since(before)
    [message] = received(systemd.socket)
    lines = message.split("\n")
    assert lines[0] == "READY=1"
    expected = r"STATUS=healthy; 3 attached; last scan (\d+)s ago; 0 pending retries"
    status = re.fullmatch(expected, lines[1])
    assert status, lines[1]
    assert 2 <= int(status[1]) <= round(2 + held_up)


def test_status_names_the_reasons_when_degraded(systemd):
    now = system_now()
    health = HealthTracker(HealthThresholds(), started_at=now - 10)
    for i in range(3):
        health.record_scan(False, now - 3 + i)
    notifier = Notifier(systemd.path)
    notifier.status(health.evaluate(now), view_of(health))
    [message] = received(systemd.socket)
    assert message.startswith("STATUS=degraded (3 consecutive scan failures (threshold 3)); ")
    assert "\n" not in message  # one line


def test_watchdog_only_when_healthy_and_at_most_every_half_interval(systemd):
    clock = FakeClock()
    notifier = Notifier(systemd.path, watchdog_interval=60.0, clock=clock)
    health = healthy_tracker()
    daemon = view_of(health)
    notifier.watchdog(daemon)
    assert received(systemd.socket) == ["WATCHDOG=1"]
    clock.now += 29
    notifier.watchdog(daemon)
    assert received(systemd.socket) == []  # too soon
    assert notifier.seconds_until_watchdog() == pytest.approx(1.0)
    clock.now += 1
    notifier.watchdog(daemon)
    assert received(systemd.socket) == ["WATCHDOG=1"]

    now = system_now()
    for i in range(5):  # five consecutive scan failures: unhealthy
        health.record_scan(False, now + i)
    clock.now += 30
    notifier.watchdog(daemon)
    clock.now += 30
    notifier.watchdog(daemon)
    assert received(systemd.socket) == []  # withheld, so systemd restarts us

    health.record_scan(True, system_now())
    notifier.watchdog(daemon)
    assert received(systemd.socket) == ["WATCHDOG=1"]


def test_watchdog_withheld_when_unhealthy_by_time_alone(systemd):
    now = system_now()
    health = HealthTracker(HealthThresholds(), started_at=now - 200)
    health.record_scan(True, now - 130)
    notifier = Notifier(systemd.path, watchdog_interval=60.0, clock=FakeClock())
    notifier.watchdog(view_of(health))
    assert received(systemd.socket) == []


def test_a_database_refusing_writes_for_long_never_withholds_the_watchdog(systemd):
    """Unhealthy for the operator, but the loop governs: a restart would lose the writes the
    daemon keeps for the database, so systemd hears from it."""
    now = system_now()
    health = HealthTracker(HealthThresholds(), started_at=now - 400)
    health.record_scan(True, now - 1)
    health.record_store_write("database is locked [transient]", now - 300)
    assert health.evaluate(now).status.value == "unhealthy"
    notifier = Notifier(systemd.path, watchdog_interval=60.0, clock=FakeClock())
    notifier.watchdog(view_of(health))
    assert received(systemd.socket) == ["WATCHDOG=1"]


def test_degraded_still_pets_the_watchdog(systemd):
    now = system_now()
    health = HealthTracker(HealthThresholds(), started_at=now - 10)
    for i in range(3):
        health.record_scan(False, now - 3 + i)
    notifier = Notifier(systemd.path, watchdog_interval=60.0, clock=FakeClock())
    notifier.watchdog(view_of(health))
    assert received(systemd.socket) == ["WATCHDOG=1"]


def test_no_watchdog_interval_sends_nothing(systemd):
    notifier = Notifier(systemd.path)
    notifier.watchdog(healthy_daemon())
    assert received(systemd.socket) == []
    assert notifier.seconds_until_watchdog() is None


def test_stopping(systemd):
    Notifier(systemd.path).stopping()
    assert received(systemd.socket) == ["STOPPING=1"]


def test_from_environment_reads_socket_and_watchdog(systemd):
    notifier = Notifier.from_environment(
        {
            "NOTIFY_SOCKET": systemd.path,
            "WATCHDOG_USEC": "60000000",
            "WATCHDOG_PID": str(os.getpid()),
        }
    )
    assert notifier.watchdog_interval == 60.0
    notifier.watchdog(healthy_daemon())
    assert received(systemd.socket) == ["WATCHDOG=1"]


def test_a_watchdog_for_another_pid_is_not_ours(systemd):
    notifier = Notifier.from_environment(
        {"NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}
    )
    assert notifier.watchdog_interval is None
    notifier.watchdog(healthy_daemon())
    assert received(systemd.socket) == []


def test_abstract_namespace_socket():
    name = f"ffrtmp-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(1.0)
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        notifier.stopping()
        assert receiver.recv(4096) == b"STOPPING=1"
        notifier.close()


def test_without_notify_socket_nothing_is_sent_and_nothing_raises():
    notifier = Notifier.from_environment({})
    assert notifier.socket_path is None
    assert notifier.send("READY=1") is False
    notifier.ready(healthy_daemon())  # no error


def test_systemd_gone_does_not_raise(tmp_path):
    notifier = Notifier(str(tmp_path / "nobody-listens.sock"), watchdog_interval=60.0)
    assert notifier.send("READY=1") is False
    notifier.watchdog(healthy_daemon())
    assert notifier.seconds_until_watchdog() == 0.0  # not sent, so still due


def test_summary_without_store_or_scan():
    health = HealthTracker(HealthThresholds(), started_at=system_now())
    daemon = view_of(health, unavailable="no cgroup governor")
    line = summary(health.evaluate(system_now()), daemon)
    assert line == "healthy; 0 attached; no scan yet; NO LIMITS APPLIED"
