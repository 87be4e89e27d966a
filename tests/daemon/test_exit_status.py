import os
import signal
import time

import pytest
from helpers_processes import STATE_TIMEOUT_S
from hypothesis import given
from hypothesis import strategies as st

from ffrtmp.exit_status import ExitInfo, decode_wait_status, zombie_exit_status
from ffrtmp.identity import read_stat


@pytest.fixture
def spawn(spawn):
    """The suite's spawner, without waiting for the exec: these tests read the kernel's own
    account of each process, from its very first event."""
    return lambda argv: spawn(argv, wait_exec=False, stdout=None, stderr=None)


def wait_for_state(pid: int, state: str, timeout: float = STATE_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stat = read_stat(pid)
        if stat is not None and stat.state == state:
            return stat
        time.sleep(0.01)
    pytest.fail(f"pid {pid} did not reach state {state} within {timeout} s")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (0, (0, None)),
        (3 << 8, (3, None)),
        (255 << 8, (255, None)),
        (signal.SIGKILL, (None, 9)),
        (signal.SIGSEGV | 0x80, (None, 11)),  # killed with a core dump
    ],
)
def test_decode_wait_status_known_values(status, expected):
    assert decode_wait_status(status) == expected


@pytest.mark.parametrize("status", [0x137F, 0xFFFF, -1, 0x10000])
def test_decode_wait_status_rejects_stops_and_out_of_range(status):
    # 0x137f is "stopped by SIGSTOP", 0xffff is "continued": neither is an exit.
    with pytest.raises(ValueError):
        decode_wait_status(status)


@given(st.integers(min_value=0, max_value=255))
def test_exit_codes_round_trip(code):
    assert decode_wait_status(code << 8) == (code, None)


@given(st.integers(min_value=1, max_value=31), st.booleans())
def test_signals_round_trip(signo, core_dumped):
    status = signo | (0x80 if core_dumped else 0)
    assert decode_wait_status(status) == (None, signo)


@given(st.integers(min_value=0, max_value=0xFFFF))
def test_decode_agrees_with_the_standard_library(status):
    try:
        expected = os.waitstatus_to_exitcode(status)
    except ValueError:
        with pytest.raises(ValueError):
            decode_wait_status(status)
        return
    code, signo = decode_wait_status(status)
    assert (code if code is not None else -signo) == expected


def test_decode_real_wait_statuses(spawn):
    exited = spawn(["sh", "-c", "exit 42"])
    _, status = os.waitpid(exited.pid, 0)
    exited.returncode = 42  # reaped here; tell Popen so the fixture does not wait again
    assert decode_wait_status(status) == (42, None)

    killed = spawn(["sleep", "30"])
    os.kill(killed.pid, signal.SIGTERM)
    _, status = os.waitpid(killed.pid, 0)
    killed.returncode = -signal.SIGTERM
    assert decode_wait_status(status) == (None, signal.SIGTERM)


def test_zombie_exit_status_reads_a_code_before_the_parent_reaps(spawn):
    proc = spawn(["sh", "-c", "exit 7"])
    stat = wait_for_state(proc.pid, "Z")

    assert zombie_exit_status(proc.pid, stat.start_ticks) == (7, None)
    assert zombie_exit_status(proc.pid, stat.start_ticks + 1) is None  # a different process

    assert proc.wait(timeout=STATE_TIMEOUT_S) == 7
    assert zombie_exit_status(proc.pid, stat.start_ticks) is None  # reaped: gone


def test_zombie_exit_status_reads_a_killing_signal(spawn):
    proc = spawn(["sleep", "30"])
    start_ticks = wait_for_state(proc.pid, "S").start_ticks
    assert zombie_exit_status(proc.pid, start_ticks) is None  # alive, not a zombie

    os.kill(proc.pid, signal.SIGKILL)
    wait_for_state(proc.pid, "Z")
    assert zombie_exit_status(proc.pid, start_ticks) == (None, signal.SIGKILL)
    assert proc.wait(timeout=STATE_TIMEOUT_S) == -signal.SIGKILL


def test_zombie_exit_status_of_a_process_that_never_existed():
    with open("/proc/sys/kernel/pid_max") as f:
        beyond_any_pid = int(f.read()) + 1
    assert zombie_exit_status(beyond_any_pid, 0) is None


def test_exit_info_from_wait_status():
    assert ExitInfo.from_wait_status(3 << 8) == ExitInfo(3, None)
    assert ExitInfo.from_wait_status(signal.SIGKILL) == ExitInfo(None, 9)
    assert ExitInfo(0, None).known


def test_exit_info_unknown_carries_its_reason():
    info = ExitInfo.unknown("exited while no exit event source was available")
    assert (info.exit_code, info.exit_signal, info.known) == (None, None, False)
    assert info.reason == "exited while no exit event source was available"


@pytest.mark.parametrize(
    ("code", "signo", "reason"),
    [
        (None, None, None),  # unknown without saying why
        (None, None, ""),
        (-1, None, None),  # the old system's made-up -1
        (256, None, None),
        (1, 9, None),  # both
        (None, 0, None),
        (0, None, "a reason although the code is known"),
    ],
)
def test_exit_info_rejects_impossible_values(code, signo, reason):
    with pytest.raises(ValueError):
        ExitInfo(code, signo, reason)


def test_exit_info_accepts_realtime_signals():
    assert ExitInfo(None, int(signal.SIGRTMAX)).exit_signal == signal.SIGRTMAX


@pytest.mark.parametrize(
    ("info", "oom", "words"),
    [
        (ExitInfo(0, None), None, "exit code 0"),
        (ExitInfo(3, None), False, "exit code 3"),
        (ExitInfo(None, 9), None, "killed by SIGKILL"),
        (ExitInfo(None, 9), True, "OOM-killed"),
        (ExitInfo.unknown("no event source"), None, "exit unknown (no event source)"),
    ],
)
def test_an_exit_reads_in_words(info, oom, words):
    assert info.describe(oom) == words
