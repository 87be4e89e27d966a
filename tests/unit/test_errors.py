"""Classification by exception type and errno first, the message only as a fallback.

Where the system can produce the error here it is produced for real (a reaped child, a zombie,
a refused connection, a locked SQLite file, a bad write to /proc); errors the machine cannot be
made to raise on demand (ENOMEM, ENOSPC, ...) are raised through ffrtmp.failpoints, which raises
exactly the OSError a failing system call would.
"""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import subprocess
import sys
import time

import psutil
import pytest
from helpers_processes import STATE_TIMEOUT_S
from hypothesis import given
from hypothesis import strategies as st

from ffrtmp import failpoints
from ffrtmp.errors import (
    ERRNO_TYPES,
    MESSAGE_HINTS,
    Classification,
    classify,
)
from ffrtmp.states import RETRYABLE_ERROR_TYPES, ErrorType


def raised(fn) -> BaseException:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - the point is to catch whatever it raises
        return exc
    raise AssertionError(f"{fn} did not raise")


@pytest.fixture
def reaped_pid():
    """The pid of a child that has exited and been reaped: nothing has that pid now (unless
    the kernel reuses it within the test, which a 4-million pid space makes negligible)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.fixture
def zombie_pid():
    child = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + STATE_TIMEOUT_S
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "child never became a zombie"
            time.sleep(0.01)
        yield child.pid
    finally:
        child.wait()


@pytest.fixture
def armed_failpoint():
    def arm(code_name: str) -> BaseException:
        failpoints.configure(f"test.errors={code_name}*1")
        return raised(lambda: failpoints.check("test.errors"))

    try:
        yield arm
    finally:
        failpoints.configure("")


def test_vanished_process_through_psutil_is_target_gone(reaped_pid):
    result = classify(raised(lambda: psutil.Process(reaped_pid)))
    assert result.target_gone is True
    assert result.retryable is False
    assert result.error_type is ErrorType.PERMANENT
    assert result.exception == "NoSuchProcess"
    assert result.errno == errno.ESRCH and result.errno_name == "ESRCH"


def test_signalling_a_vanished_process_is_target_gone(reaped_pid):
    result = classify(raised(lambda: os.kill(reaped_pid, 0)))
    assert result.exception == "ProcessLookupError"
    assert (result.target_gone, result.retryable, result.errno) == (True, False, errno.ESRCH)


def test_zombie_is_target_gone(zombie_pid):
    exc = raised(lambda: psutil.Process(zombie_pid).cmdline())
    assert isinstance(exc, psutil.ZombieProcess)
    result = classify(exc)
    assert (result.target_gone, result.retryable) == (True, False)


def test_process_lookup_error_without_errno_is_target_gone():
    result = classify(ProcessLookupError("gone"))
    assert (result.target_gone, result.retryable, result.errno) == (True, False, None)


def test_psutil_access_denied_is_permanent():
    result = classify(psutil.AccessDenied(pid=1))
    assert (result.error_type, result.retryable, result.target_gone) == (
        ErrorType.PERMANENT,
        False,
        False,
    )


def test_missing_cgroup_file_is_permanent(tmp_path):
    missing = tmp_path / "cpu" / "ffrtmp" / "job-1" / "cgroup.procs"
    result = classify(raised(lambda: missing.write_text("1")))
    assert (result.error_type, result.errno_name, result.retryable) == (
        ErrorType.PERMANENT,
        "ENOENT",
        False,
    )
    assert str(missing) in result.message


def test_invalid_value_written_to_proc_is_permanent():
    def write_garbage():
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("not-a-number")

    result = classify(raised(write_garbage))
    assert (result.error_type, result.errno_name) == (ErrorType.PERMANENT, "EINVAL")


def test_refused_connection_is_transient():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    # The port was bound and released, so nothing listens on it now.
    result = classify(raised(lambda: socket.create_connection(("127.0.0.1", port), timeout=2)))
    assert (result.error_type, result.errno_name, result.retryable) == (
        ErrorType.TRANSIENT,
        "ECONNREFUSED",
        True,
    )


def test_socket_timeout_is_transient():
    with socket.socket() as listener, socket.socket() as client:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client.connect(listener.getsockname())
        client.settimeout(0.01)
        exc = raised(lambda: client.recv(1))
    assert isinstance(exc, TimeoutError)
    result = classify(exc)
    assert (result.error_type, result.retryable) == (ErrorType.TRANSIENT, True)


def test_locked_sqlite_database_is_transient(tmp_path):
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        holder.execute("CREATE TABLE t (x)")
        holder.execute("BEGIN IMMEDIATE")
        exc = raised(lambda: other.execute("INSERT INTO t VALUES (1)"))
    finally:
        holder.close()
        other.close()
    assert isinstance(exc, sqlite3.OperationalError)
    result = classify(exc)
    assert (result.error_type, result.retryable) == (ErrorType.TRANSIENT, True)


def test_locked_database_through_sqlalchemy_is_transient(tmp_path):
    import sqlalchemy as sa

    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:
        holder.execute("CREATE TABLE t (x)")
        holder.execute("BEGIN IMMEDIATE")
        with engine.connect() as conn:
            exc = raised(lambda: conn.execute(sa.text("INSERT INTO t VALUES (1)")))
    finally:
        holder.close()
        engine.dispose()
    assert isinstance(exc, sa.exc.OperationalError)
    assert classify(exc).error_type is ErrorType.TRANSIENT


def test_other_sqlite_operational_error_is_not_transient(tmp_path):
    conn = sqlite3.connect(tmp_path / "x.db")
    try:
        exc = raised(lambda: conn.execute("SELECT * FROM no_such_table"))
    finally:
        conn.close()
    assert classify(exc).error_type is ErrorType.UNKNOWN


@pytest.mark.parametrize(
    ("code_name", "expected"),
    [
        ("EACCES", ErrorType.PERMANENT),
        ("EPERM", ErrorType.PERMANENT),
        ("EINVAL", ErrorType.PERMANENT),
        ("ENOENT", ErrorType.PERMANENT),
        ("EROFS", ErrorType.PERMANENT),
        ("EAGAIN", ErrorType.TRANSIENT),
        ("EBUSY", ErrorType.TRANSIENT),
        ("EINTR", ErrorType.TRANSIENT),
        ("ETIMEDOUT", ErrorType.TRANSIENT),
        ("ECONNREFUSED", ErrorType.TRANSIENT),
        ("ENOMEM", ErrorType.RESOURCE),
        ("ENOSPC", ErrorType.RESOURCE),
        ("EMFILE", ErrorType.RESOURCE),
        ("ENFILE", ErrorType.RESOURCE),
        ("EDQUOT", ErrorType.RESOURCE),
    ],
)
def test_errno_decides_the_type(armed_failpoint, code_name, expected):
    result = classify(armed_failpoint(code_name))
    assert result.error_type is expected
    assert result.errno_name == code_name
    assert result.errno == getattr(errno, code_name)
    assert result.retryable is (expected in RETRYABLE_ERROR_TYPES)
    assert result.target_gone is False


def test_esrch_from_a_cgroup_write_is_target_gone(armed_failpoint):
    result = classify(armed_failpoint("ESRCH"))
    assert (result.target_gone, result.retryable, result.error_type) == (
        True,
        False,
        ErrorType.PERMANENT,
    )


def test_enomem_and_etimedout_are_no_longer_permanent():
    # The original's defect: both fell through to "permanent".
    assert classify(OSError(errno.ENOMEM, "Cannot allocate memory")).retryable is True
    assert classify(OSError(errno.ETIMEDOUT, "Connection timed out")).retryable is True


def test_memory_error_is_resource():
    result = classify(MemoryError())
    assert (result.error_type, result.retryable, result.message) == (
        ErrorType.RESOURCE,
        True,
        "MemoryError",
    )


def test_errno_wins_over_a_misleading_message():
    result = classify(OSError(errno.ENOENT, "rate limit exceeded, try again"))
    assert (result.error_type, result.retryable) == (ErrorType.PERMANENT, False)


def test_oserror_subclass_without_errno_is_judged_by_its_type():
    assert classify(PermissionError("no")).error_type is ErrorType.PERMANENT
    assert classify(TimeoutError()).error_type is ErrorType.TRANSIENT


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Rate Limit exceeded", ErrorType.RATE_LIMIT),
        ("HTTP 429 Too Many Requests", ErrorType.RATE_LIMIT),
        ("request THROTTLED by upstream", ErrorType.RATE_LIMIT),
        ("operation Timed Out", ErrorType.TRANSIENT),
        ("Resource temporarily unavailable", ErrorType.TRANSIENT),
        ("busy, TRY AGAIN later", ErrorType.TRANSIENT),
        ("worker ran Out Of Memory", ErrorType.RESOURCE),
        ("No space left on device", ErrorType.RESOURCE),
        ("something odd happened", ErrorType.UNKNOWN),
    ],
)
def test_message_is_the_case_insensitive_fallback(message, expected):
    result = classify(RuntimeError(message))
    assert result.error_type is expected
    assert result.errno is None
    assert result.retryable is (expected in RETRYABLE_ERROR_TYPES)


def test_subprocess_timeout_is_transient_by_its_message():
    exc = raised(lambda: subprocess.run([sys.executable, "-c", "pass"], timeout=0.000001))
    assert isinstance(exc, subprocess.TimeoutExpired)
    assert classify(exc).error_type is ErrorType.TRANSIENT


def test_unknown_is_not_retryable():
    result = classify(ValueError("bad thing"))
    assert result == Classification(
        error_type=ErrorType.UNKNOWN,
        retryable=False,
        errno=None,
        errno_name=None,
        exception="ValueError",
        message="bad thing",
        target_gone=False,
    )


def test_cause_decides_when_the_wrapper_has_no_errno():
    def wrapped():
        try:
            raise OSError(errno.EBUSY, "Device or resource busy")
        except OSError as exc:
            raise RuntimeError("attach failed") from exc

    result = classify(raised(wrapped))
    assert (result.error_type, result.errno_name, result.exception) == (
        ErrorType.TRANSIENT,
        "EBUSY",
        "RuntimeError",
    )
    assert result.message == "attach failed: [Errno 16] Device or resource busy"


def test_context_decides_when_there_is_no_cause():
    def wrapped():
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("could not write limits")  # noqa: B904 - testing __context__

    assert classify(raised(wrapped)).error_type is ErrorType.RESOURCE


def test_suppressed_context_is_ignored():
    def wrapped():
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("could not write limits") from None

    assert classify(raised(wrapped)).error_type is ErrorType.UNKNOWN


def test_only_one_level_of_cause_is_walked():
    inner = OSError(errno.EBUSY, "busy")
    middle = RuntimeError("middle")
    middle.__cause__ = inner
    outer = RuntimeError("outer")
    outer.__cause__ = middle
    assert classify(outer).error_type is ErrorType.UNKNOWN


def test_an_errno_on_the_outer_exception_is_not_overruled_by_its_cause():
    outer = OSError(errno.EIO, "Input/output error")
    outer.__cause__ = OSError(errno.EBUSY, "busy")
    result = classify(outer)
    assert (result.error_type, result.errno_name) == (ErrorType.UNKNOWN, "EIO")


def test_importing_errors_does_not_import_psutil_or_sqlalchemy():
    code = (
        "import sys, ffrtmp.errors; "
        "print(sorted(m for m in ('psutil', 'sqlalchemy', 'sqlite3') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_as_dict_is_plain():
    data = classify(OSError(errno.EBUSY, "busy")).as_dict()
    assert data["error_type"] == "transient" and type(data["error_type"]) is str
    assert data["errno_name"] == "EBUSY"


@given(code=st.sampled_from(sorted(ERRNO_TYPES)), message=st.text(max_size=40))
def test_property_errno_decides_whatever_the_message(code, message):
    result = classify(OSError(code, message))
    assert result.error_type is ERRNO_TYPES[code]
    wrapped = RuntimeError(message)
    wrapped.__cause__ = OSError(code, message)
    assert classify(wrapped).error_type is ERRNO_TYPES[code]


@given(message=st.text(max_size=60))
def test_property_message_fallback_is_consistent(message):
    result = classify(Exception(message))
    hinted = [t for hint, t in MESSAGE_HINTS if hint in message.lower()]
    assert result.error_type is (hinted[0] if hinted else ErrorType.UNKNOWN)
    assert result.retryable is (result.error_type in RETRYABLE_ERROR_TYPES)
    assert result.target_gone is False
