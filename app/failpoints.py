"""Failpoints: make a named step fail from outside the process, for tests.

FFRTMP_FAILPOINTS is a comma-separated list of NAME=ERRNO*COUNT, for example
`governor.attach=EBUSY*3,store.commit=EIO*1`: the step `governor.attach` raises
OSError(EBUSY) the first three times it runs. COUNT may be omitted (once) or `inf`.
Unset, every check is one dict lookup on an empty dict.

A name must be one of KNOWN (a step that calls check() with it) or start with `test.` (a
test's own step): a misspelt name would otherwise arm nothing and the test pass for the wrong
reason. A new check() adds its name to KNOWN.
"""

from __future__ import annotations

import errno
import math
import os
import threading

ENV_VAR = "FFRTMP_FAILPOINTS"
KNOWN = frozenset(
    {
        "governor.attach",
        "proc_events.open",
        "proc_events.recv",
        "scanner.scan",
        "store.commit",
    }
)
TEST_PREFIX = "test."

_lock = threading.Lock()
_remaining: dict[str, list] = {}  # name -> [errno, remaining count]


class FailpointSpecError(ValueError):
    pass


def parse(spec: str) -> dict[str, list]:
    points: dict[str, list] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, action = part.partition("=")
        if not sep or not name:
            raise FailpointSpecError(f"{ENV_VAR}: {part!r} is not NAME=ERRNO*COUNT")
        errname, _, count_text = action.partition("*")
        code = getattr(errno, errname.strip().upper(), None)
        if not isinstance(code, int):
            raise FailpointSpecError(f"{ENV_VAR}: {errname!r} in {part!r} is not an errno name")
        try:
            count = math.inf if count_text.strip() == "inf" else int(count_text or 1)
        except ValueError:
            raise FailpointSpecError(f"{ENV_VAR}: count in {part!r} is not a number") from None
        name = name.strip()
        if name not in KNOWN and not name.startswith(TEST_PREFIX):
            known = ", ".join(sorted(KNOWN))
            raise FailpointSpecError(f"{ENV_VAR}: {name!r} is not a failpoint (known: {known})")
        points[name] = [code, count]
    return points


def configure(spec: str | None = None) -> None:
    """Load the failpoints from `spec`, or from the environment when spec is None."""
    global _remaining
    with _lock:
        _remaining = parse(os.environ.get(ENV_VAR, "") if spec is None else spec)


def armed() -> list[str]:
    """One phrase per failpoint that will still fire, e.g. `governor.attach fails with EBUSY
    3 more times`."""
    with _lock:
        points = [(name, point) for name, point in sorted(_remaining.items()) if point[1] > 0]
    phrases = []
    for name, (code, count) in points:
        times = "every time" if count == math.inf else f"{int(count)} more times"
        phrases.append(f"{name} fails with {errno.errorcode.get(code, code)} {times}")
    return phrases


def check(name: str) -> None:
    """Raise the configured OSError if failpoint `name` is armed; otherwise do nothing."""
    if not _remaining:
        return
    with _lock:
        point = _remaining.get(name)
        if point is None or point[1] <= 0:
            return
        point[1] -= 1
        code = point[0]
    raise OSError(code, f"failpoint {name}: {os.strerror(code)}")


try:
    configure()
except FailpointSpecError:
    # A bad spec must not break importing the library; the commands that honour failpoints
    # call configure() again and report it as one sentence.
    _remaining = {}
