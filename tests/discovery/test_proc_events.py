import select
import signal
import struct
import subprocess
import sys
import time

import pytest

from ffrtmp import failpoints
from ffrtmp.exit_status import decode_wait_status
from ffrtmp.proc_events import (
    ALL_EVENTS,
    ExecEvent,
    ExitEvent,
    ForkEvent,
    Overflow,
    ProcEventListener,
    listener_available,
    parse_messages,
)

# ---- crafted bytes: the layouts below are written out from linux/netlink.h, connector.h and
# cn_proc.h on purpose, independently of the module under test.

NLMSG_DONE = 3


def netlink_message(
    what: int, body: bytes, *, idx: int = 1, val: int = 1, ack: int = 0, timestamp: int = 123
) -> bytes:
    event = struct.pack("=IIQ", what, 0, timestamp) + body
    event += b"\0" * (40 - len(event))  # the kernel always sends the full 40-byte proc_event
    connector = struct.pack("=IIIIHH", idx, val, 0, ack, len(event), 0) + event
    return struct.pack("=IHHII", 16 + len(connector), NLMSG_DONE, 0, 0, 0) + connector


def exit_message(pid, tgid, status, exit_signal=17, timestamp=123):
    return netlink_message(
        0x80000000, struct.pack("=iiIi", pid, tgid, status, exit_signal), timestamp=timestamp
    )


# A datagram captured from this machine's kernel: `sh -c 'exit 3'` (pid 5571) exited.
CAPTURED_EXIT = bytes.fromhex(
    "4c000000030000000300000000000000"
    "0100000001000000030000000000000028000000"
    "0000008001000000941d25d132000000c3150000c315000000030000110000009a1500009a150000"
)


def test_parse_captured_kernel_exit_message():
    assert parse_messages(CAPTURED_EXIT) == [
        ExitEvent(pid=5571, tgid=5571, exit_status=0x300, exit_signal=17, timestamp_ns=0x32D1251D94)
    ]
    assert decode_wait_status(parse_messages(CAPTURED_EXIT)[0].exit_status) == (3, None)


def test_parse_fork_and_exec():
    data = netlink_message(1, struct.pack("=iiii", 10, 10, 11, 11), timestamp=5)
    data += netlink_message(2, struct.pack("=ii", 11, 11), timestamp=6)
    assert parse_messages(data) == [ForkEvent(10, 10, 11, 11, 5), ExecEvent(11, 11, 6)]


def test_parse_several_messages_in_one_datagram_skipping_what_is_not_needed():
    data = b"".join(
        [
            exit_message(20, 20, 1 << 8, timestamp=1),
            netlink_message(0x200, struct.pack("=ii", 20, 20) + b"ffmpeg\0"),  # comm change
            netlink_message(0, struct.pack("=I", 0), ack=8),  # someone's LISTEN acknowledged
            netlink_message(0x80000000, struct.pack("=iiIi", 30, 30, 0, 17), idx=7),  # not proc
            exit_message(22, 22, signal.SIGKILL, timestamp=2),
        ]
    )
    assert parse_messages(data) == [
        ExitEvent(20, 20, 1 << 8, 17, 1),
        ExitEvent(22, 22, signal.SIGKILL, 17, 2),
    ]


def test_parse_keeps_the_events_before_a_truncated_message():
    data = exit_message(40, 40, 0) + exit_message(41, 41, 0)[:50]
    assert parse_messages(data) == [ExitEvent(40, 40, 0, 17, 123)]


def test_parse_ignores_a_message_whose_event_is_too_short():
    event = struct.pack("=IIQ", 0x80000000, 0, 1) + struct.pack("=ii", 50, 50)  # no status
    connector = struct.pack("=IIIIHH", 1, 1, 0, 0, len(event), 0) + event
    data = struct.pack("=IHHII", 16 + len(connector), NLMSG_DONE, 0, 0, 0) + connector
    assert parse_messages(data) == []


def test_parse_empty_datagram():
    assert parse_messages(b"") == []


def test_thread_events_are_flagged():
    assert ExitEvent(pid=101, tgid=100, exit_status=0, exit_signal=-1, timestamp_ns=0).is_thread
    assert not ExitEvent(100, 100, 0, 17, 0).is_thread
    assert ForkEvent(1, 1, 101, 100, 0).is_thread
    assert not ForkEvent(1, 1, 100, 100, 0).is_thread


# ---- the real connector

EVENT_TIMEOUT_S = 60.0  # an upper bound for a busy machine; a passing test waits milliseconds


@pytest.fixture
def spawn(spawn):
    """The suite's spawner, without waiting for the exec: these tests read the kernel's own
    account of each process, from its very first event."""
    return lambda argv: spawn(argv, wait_exec=False, stdout=None, stderr=None)


@pytest.fixture
def listener():
    with ProcEventListener(kinds=ALL_EVENTS) as opened:
        yield opened


def collect_until(listener, done, timeout: float = EVENT_TIMEOUT_S) -> list:
    """Every event read until one for which done(event) is true; fails after `timeout` s."""
    seen = []
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        if select.select([listener], [], [], remaining)[0]:
            for event in listener.read_events():
                seen.append(event)
                if done(event):
                    return seen
    pytest.fail(f"no matching process event within {timeout} s")


def wait_for_event(listener, matches, timeout: float = EVENT_TIMEOUT_S):
    """The first event for which matches(event) is true."""
    return collect_until(listener, matches, timeout)[-1]


def exit_of(pid):
    return lambda e: isinstance(e, ExitEvent) and e.pid == pid


@pytest.mark.usefixtures("proc_connector")
def test_exit_event_carries_the_exit_code(listener, spawn):
    proc = spawn(["sh", "-c", "exit 3"])
    event = wait_for_event(listener, exit_of(proc.pid))
    assert event.tgid == proc.pid
    assert decode_wait_status(event.exit_status) == (3, None)
    assert proc.wait(timeout=EVENT_TIMEOUT_S) == 3


@pytest.mark.usefixtures("proc_connector")
def test_exit_event_carries_the_killing_signal(listener, spawn):
    proc = spawn(["sleep", "30"])
    proc.kill()  # SIGKILL to this pid only
    event = wait_for_event(listener, exit_of(proc.pid))
    assert decode_wait_status(event.exit_status) == (None, signal.SIGKILL)


@pytest.mark.usefixtures("proc_connector")
def test_fork_and_exec_events_of_a_new_process(listener, spawn):
    proc = spawn(["sleep", "30"])
    seen = collect_until(listener, lambda e: isinstance(e, ExecEvent) and e.pid == proc.pid)
    executed = seen[-1]
    forked = [e for e in seen if isinstance(e, ForkEvent) and e.child_pid == proc.pid]
    assert len(forked) == 1
    assert forked[0].child_tgid == proc.pid
    assert executed.tgid == proc.pid
    assert forked[0].timestamp_ns <= executed.timestamp_ns <= time.monotonic_ns()


@pytest.mark.usefixtures("proc_connector")
def test_fork_events_come_only_to_a_listener_that_asks(spawn):
    with ProcEventListener() as exec_and_exit:
        proc = spawn(["sleep", "30"])
        seen = collect_until(
            exec_and_exit, lambda e: isinstance(e, ExecEvent) and e.pid == proc.pid
        )
    assert seen, "the exec event itself was read"
    assert not [e for e in seen if isinstance(e, ForkEvent)]


@pytest.mark.usefixtures("proc_connector")
def test_thread_exits_are_dropped_unless_asked_for(listener, spawn):
    with ProcEventListener(include_threads=True, kinds=ALL_EVENTS) as all_threads:
        code = "import threading; t = threading.Thread(target=print); t.start(); t.join()"
        proc = spawn([sys.executable, "-c", code])
        # join() returns before the thread has left the kernel, so its exit event may come
        # after the leader's. Once the process is reaped every thread of it has exited, and
        # the kernel sends each listener its events in order: a process started after that
        # is a marker behind which both listeners have had everything about `proc`.
        assert proc.wait(timeout=EVENT_TIMEOUT_S) == 0
        marker = spawn(["true"])
        with_threads = collect_until(all_threads, exit_of(marker.pid))
    seen = collect_until(listener, exit_of(marker.pid))

    thread_exits = [
        e for e in with_threads if isinstance(e, ExitEvent) and e.tgid == proc.pid and e.is_thread
    ]
    assert len(thread_exits) == 1
    assert thread_exits[0].pid != proc.pid
    assert any(exit_of(proc.pid)(e) for e in seen)
    assert not [e for e in seen if getattr(e, "is_thread", False)]
    assert any(isinstance(e, ForkEvent) and e.child_pid == proc.pid for e in seen)


@pytest.mark.usefixtures("proc_connector")
def test_overflow_is_reported_when_the_kernel_drops_events(spawn):
    # The kernel doubles the size asked for; 32 KiB holds about 40 events (some 800 bytes
    # each), and each `true` produces three (fork, exec, exit), so 200 of them overflow it.
    with ProcEventListener(receive_buffer_bytes=16384) as listener:
        for _ in range(200):
            subprocess.run(["true"], check=True)
        events = listener.read_events()
        assert Overflow() in events
        assert listener.overflows >= 1

        # The socket keeps working after an overflow.
        proc = spawn(["sh", "-c", "exit 5"])
        event = wait_for_event(listener, exit_of(proc.pid))
        assert decode_wait_status(event.exit_status) == (5, None)


@pytest.mark.usefixtures("proc_connector")
def test_max_events_bounds_one_read(listener):
    for _ in range(5):
        subprocess.run(["true"], check=True)
    assert len(listener.read_events(max_events=2)) in (2, 3)  # stops at a datagram boundary
    assert listener.read_events()  # the rest is still there


@pytest.mark.usefixtures("proc_connector")
def test_recv_failure_armed_by_failpoint_becomes_overflow(listener, spawn):
    failpoints.configure("proc_events.recv=ENOBUFS*1")
    try:
        events = listener.read_events()
    finally:
        failpoints.configure("")
    assert events[0] == Overflow()
    assert listener.overflows == 1


def test_listener_unavailable_reason_names_the_refusal():
    failpoints.configure("proc_events.open=EPERM*1")
    try:
        reason = listener_available()
    finally:
        failpoints.configure("")
    assert reason is not None and "EPERM" in reason


def test_listener_unavailable_reason_names_a_missing_protocol():
    failpoints.configure("proc_events.open=EPROTONOSUPPORT*1")
    try:
        reason = listener_available()
    finally:
        failpoints.configure("")
    assert reason == "this kernel has no netlink process-events connector (EPROTONOSUPPORT)"


@pytest.mark.usefixtures("proc_connector")
def test_listener_is_available_to_root_here():
    assert listener_available() is None


@pytest.mark.usefixtures("proc_connector")
def test_closed_listener_refuses_to_read():
    listener = ProcEventListener().open()
    assert listener.fileno() >= 0
    listener.close()
    listener.close()  # twice is harmless
    assert not listener.is_open
    with pytest.raises(ValueError):
        listener.read_events()
    with pytest.raises(ValueError):
        listener.fileno()


def test_receive_buffer_must_be_positive():
    with pytest.raises(ValueError):
        ProcEventListener(receive_buffer_bytes=0)
