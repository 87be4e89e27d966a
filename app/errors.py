"""What kind of failure an exception is, decided by its type and errno before its message.

The order of evidence:
1. The exception's type and errno: a process that is gone (`psutil.NoSuchProcess`,
   `psutil.ZombieProcess`, `ProcessLookupError`, ESRCH) is `target_gone`; the errno tables
   below; `TimeoutError`, `MemoryError`, `psutil.AccessDenied`, SQLite "database is locked".
2. If the exception itself has no errno and says nothing by its type, the same for its
   `__cause__` (or its `__context__` when no cause was given and the context was not
   suppressed), one level only.
3. Only then the message (the exception's, then that cause's), case-insensitively:
   "rate limit", "too many requests", "throttl" are rate_limit; "timed out", "temporarily
   unavailable", "try again" are transient; "out of memory", "no space" are resource.
4. Anything else is unknown, and unknown is not retried.

psutil, sqlite3 and SQLAlchemy are looked up in `sys.modules` rather than imported: an
exception of one of their types can only exist once its module has been imported, so this module
stays cheap to import and never pulls them in.
"""

from __future__ import annotations

import errno as errno_module
import sys
from dataclasses import dataclass

from ffrtmp.states import RETRYABLE_ERROR_TYPES, ErrorType

CANCEL_REASON_TARGET_EXITED = "target_exited"
CANCEL_REASON_PID_REUSED = "pid_reused"

TARGET_GONE_ERRNOS = frozenset({errno_module.ESRCH})

ERRNO_TYPES: dict[int, ErrorType] = {
    # The request can never succeed as made: no permission, a bad value, a cgroup path that
    # does not exist, a read-only or unsupported cgroup file.
    errno_module.EACCES: ErrorType.PERMANENT,
    errno_module.EPERM: ErrorType.PERMANENT,
    errno_module.EINVAL: ErrorType.PERMANENT,
    errno_module.ENOENT: ErrorType.PERMANENT,
    errno_module.ENOTDIR: ErrorType.PERMANENT,
    errno_module.EROFS: ErrorType.PERMANENT,
    errno_module.EOPNOTSUPP: ErrorType.PERMANENT,
    # The same request may succeed a moment later.
    errno_module.EAGAIN: ErrorType.TRANSIENT,
    errno_module.EBUSY: ErrorType.TRANSIENT,
    errno_module.EINTR: ErrorType.TRANSIENT,
    errno_module.ETIMEDOUT: ErrorType.TRANSIENT,
    errno_module.ECONNREFUSED: ErrorType.TRANSIENT,
    errno_module.ECONNRESET: ErrorType.TRANSIENT,
    # The machine ran short of something; it may succeed once something is freed.
    errno_module.ENOMEM: ErrorType.RESOURCE,
    errno_module.ENOSPC: ErrorType.RESOURCE,
    errno_module.EMFILE: ErrorType.RESOURCE,
    errno_module.ENFILE: ErrorType.RESOURCE,
    errno_module.EDQUOT: ErrorType.RESOURCE,
}

# OSError subclasses raised without an errno (`raise PermissionError("...")`) still say what
# happened by their type. Order matters only in that no class here subclasses another.
_OSERROR_CLASS_TYPES: tuple[tuple[type[OSError], ErrorType], ...] = (
    (PermissionError, ErrorType.PERMANENT),
    (FileNotFoundError, ErrorType.PERMANENT),
    (NotADirectoryError, ErrorType.PERMANENT),
    (TimeoutError, ErrorType.TRANSIENT),
    (BlockingIOError, ErrorType.TRANSIENT),
    (InterruptedError, ErrorType.TRANSIENT),
    (ConnectionRefusedError, ErrorType.TRANSIENT),
    (ConnectionResetError, ErrorType.TRANSIENT),
)

MESSAGE_HINTS: tuple[tuple[str, ErrorType], ...] = (
    ("rate limit", ErrorType.RATE_LIMIT),
    ("rate-limit", ErrorType.RATE_LIMIT),
    ("ratelimit", ErrorType.RATE_LIMIT),
    ("too many requests", ErrorType.RATE_LIMIT),
    ("throttl", ErrorType.RATE_LIMIT),
    ("timed out", ErrorType.TRANSIENT),
    ("temporarily unavailable", ErrorType.TRANSIENT),
    ("try again", ErrorType.TRANSIENT),
    ("out of memory", ErrorType.RESOURCE),
    ("no space", ErrorType.RESOURCE),
    ("disk is full", ErrorType.RESOURCE),
)

_SQLITE_LOCKED_MESSAGES = ("database is locked", "database table is locked")
_SQLITE_FULL = 13  # SQLite's primary result code for "database or disk is full"


@dataclass(frozen=True, slots=True)
class Classification:
    """error_type and retryable decide what the caller does; target_gone means the process
    the operation was about has exited, so the caller cancels with CANCEL_REASON_TARGET_EXITED.
    errno is the number that decided the type, if any; exception and message describe the
    exception that was raised (with its cause's message appended when the cause decided)."""

    error_type: ErrorType
    retryable: bool
    errno: int | None
    errno_name: str | None
    exception: str
    message: str
    target_gone: bool = False

    def as_dict(self) -> dict:
        return {
            "error_type": self.error_type.value,
            "retryable": self.retryable,
            "errno": self.errno,
            "errno_name": self.errno_name,
            "exception": self.exception,
            "message": self.message,
            "target_gone": self.target_gone,
        }


@dataclass(frozen=True, slots=True)
class _Verdict:
    error_type: ErrorType
    errno: int | None = None
    target_gone: bool = False


# Exceptions that say the code is wrong, not the world: a catch-all that must keep a loop going
# (the daemon's steps, the shipper's thread) logs these with their traceback and counts them.
PROGRAMMING_ERRORS = (
    AssertionError,
    AttributeError,
    ImportError,
    IndexError,
    KeyError,
    NameError,
    NotImplementedError,
    RecursionError,
    TypeError,
    ZeroDivisionError,
)


def is_programming_error(exc: BaseException) -> bool:
    return isinstance(exc, PROGRAMMING_ERRORS)


def classify(exc: BaseException) -> Classification:
    """The Classification of `exc`; never raises."""
    verdict = _by_type_and_errno(exc)
    decided_by = exc
    # An errno on the exception itself is the system's own answer; a wrapper without one
    # (a library error, a RuntimeError raised `from` an OSError) is judged by what it wraps.
    inner = _inner(exc) if _errno_of(exc) is None else None
    if verdict is None and inner is not None:
        verdict = _by_type_and_errno(inner)
        decided_by = inner
    if verdict is None:
        verdict = _by_message(_text(exc))
        decided_by = exc
    if verdict is None and inner is not None:
        verdict = _by_message(_text(inner))
        decided_by = inner
    if verdict is None:
        verdict = _Verdict(ErrorType.UNKNOWN)
        decided_by = exc

    message = _text(exc) or type(exc).__name__
    if decided_by is not exc:
        inner_text = _text(decided_by)
        if inner_text and inner_text not in message:
            message = f"{message}: {inner_text}"
    # An errno no rule knows is still worth storing: it is what an operator searches for.
    code = verdict.errno if verdict.errno is not None else _errno_of(decided_by)
    return Classification(
        error_type=verdict.error_type,
        retryable=verdict.error_type in RETRYABLE_ERROR_TYPES and not verdict.target_gone,
        errno=code,
        errno_name=errno_module.errorcode.get(code) if code is not None else None,
        exception=type(exc).__name__,
        message=message,
        target_gone=verdict.target_gone,
    )


def _inner(exc: BaseException) -> BaseException | None:
    if exc.__cause__ is not None:
        return exc.__cause__
    if exc.__suppress_context__:
        return None
    return exc.__context__


def _by_type_and_errno(exc: BaseException) -> _Verdict | None:
    psutil = sys.modules.get("psutil")
    if psutil is not None:
        # ZombieProcess subclasses NoSuchProcess: a zombie has exited, only its status is left.
        if isinstance(exc, psutil.NoSuchProcess):
            return _Verdict(ErrorType.PERMANENT, errno_module.ESRCH, target_gone=True)
        if isinstance(exc, psutil.AccessDenied):
            return _Verdict(ErrorType.PERMANENT, errno_module.EPERM)
        if isinstance(exc, psutil.TimeoutExpired):
            return _Verdict(ErrorType.TRANSIENT)

    code = _errno_of(exc)
    if code is not None:
        if code in TARGET_GONE_ERRNOS:
            return _Verdict(ErrorType.PERMANENT, code, target_gone=True)
        if code in ERRNO_TYPES:
            return _Verdict(ERRNO_TYPES[code], code)
    if isinstance(exc, ProcessLookupError):
        return _Verdict(ErrorType.PERMANENT, code, target_gone=True)
    if isinstance(exc, OSError):
        for cls, error_type in _OSERROR_CLASS_TYPES:
            if isinstance(exc, cls):
                return _Verdict(error_type, code)
    if isinstance(exc, MemoryError):
        return _Verdict(ErrorType.RESOURCE)
    if _is_sqlite_locked(exc):
        return _Verdict(ErrorType.TRANSIENT)
    if _sqlite_result_code(exc) == _SQLITE_FULL:
        return _Verdict(ErrorType.RESOURCE, errno_module.ENOSPC)
    return None


def _sqlite_result_code(exc: BaseException) -> int | None:
    """SQLite's primary result code of a sqlite3 error (or of the one SQLAlchemy wraps)."""
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is None:
        return None
    cause = getattr(exc, "orig", None) or exc
    if not isinstance(cause, sqlite3.Error):
        return None
    code = getattr(cause, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _errno_of(exc: BaseException) -> int | None:
    code = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _is_sqlite_locked(exc: BaseException) -> bool:
    operational_errors = tuple(
        cls
        for cls in (
            getattr(sys.modules.get("sqlite3"), "OperationalError", None),
            getattr(sys.modules.get("sqlalchemy.exc"), "OperationalError", None),
        )
        if cls is not None
    )
    if not operational_errors or not isinstance(exc, operational_errors):
        return False
    text = _text(exc).lower()
    return any(m in text for m in _SQLITE_LOCKED_MESSAGES)


def _by_message(text: str) -> _Verdict | None:
    lowered = text.lower()
    for hint, error_type in MESSAGE_HINTS:
        if hint in lowered:
            return _Verdict(error_type)
    return None


def _text(exc: BaseException) -> str:
    # SQLAlchemy appends the statement ("[SQL: ...]", with its parameters) and a link to its
    # documentation: neither helps an operator, and the parameters may be a process's argv.
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, sa_exc.StatementError) and exc.orig is not None:
        exc = exc.orig
    try:
        return str(exc)
    except Exception:
        # A broken __str__ must not turn an error report into a second error.
        return type(exc).__name__
