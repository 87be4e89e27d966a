"""systemd's notify protocol (sd_notify(3)) over a plain AF_UNIX datagram socket.

READY=1 after the first scan, STATUS= a one-line summary on every health snapshot, STOPPING=1
on the way out, and WATCHDOG=1 from the loop only while the daemon is not unhealthy: a loop
that hangs, or keeps failing its scans, stops petting the watchdog and systemd restarts it
(`WatchdogSec=` with `Restart=on-failure`).

Sending never raises: systemd being away must not stop the daemon.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ffrtmp.daemon.errors import STORE_ERRORS
from ffrtmp.states import HealthStatus, RetryState

if TYPE_CHECKING:
    from ffrtmp.daemon.view import DaemonView
    from ffrtmp.health import HealthReport

log = logging.getLogger(__name__)


class Notifier:
    """`socket_path` None: every call is a no-op (not started by systemd)."""

    def __init__(
        self,
        socket_path: str | None,
        watchdog_interval: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.socket_path = socket_path
        self.watchdog_interval = watchdog_interval
        self._clock = clock
        self._last_watchdog: float | None = None
        self._withheld = False  # the watchdog is being withheld because of ill health
        self._socket: socket.socket | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """NOTIFY_SOCKET ('@name' is the abstract namespace), WATCHDOG_USEC and WATCHDOG_PID."""
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET") or None
        if path is not None and path.startswith("@"):
            path = "\0" + path[1:]
        interval = None
        usec = env.get("WATCHDOG_USEC", "")
        watchdog_pid = env.get("WATCHDOG_PID", "")
        for_us = not watchdog_pid or watchdog_pid == str(os.getpid())
        if usec.isdigit() and int(usec) > 0 and for_us:
            interval = int(usec) / 1_000_000
        elif usec:
            log.debug("watchdog not for us (WATCHDOG_USEC=%s, WATCHDOG_PID=%s)", usec, watchdog_pid)
        return cls(path, interval)

    # --- what the daemon calls -----------------------------------------------------------

    def ready(self, view: DaemonView) -> None:
        self.send(f"READY=1\nSTATUS={summary(view.report(), view)}")

    def status(self, report: HealthReport, view: DaemonView) -> None:
        self.send(f"STATUS={summary(report, view)}")

    def watchdog(self, view: DaemonView) -> None:
        """WATCHDOG=1 at most every half watchdog interval, and only while not unhealthy."""
        if self.watchdog_interval is None:
            return
        now = self._clock()
        if (
            self._last_watchdog is not None
            and now - self._last_watchdog < self.watchdog_interval / 2
        ):
            return
        report = view.report()
        # A database that refuses writes makes the daemon unhealthy, not its loop: a restart
        # would lose what it keeps for the database, so only the loop's own health counts.
        if (getattr(report, "loop_status", None) or report.status) == HealthStatus.UNHEALTHY:
            if not self._withheld:
                log.error(
                    "withholding the systemd watchdog while unhealthy: %s",
                    "; ".join(report.reasons),
                )
                self._withheld = True
            return
        self._withheld = False
        if self.send("WATCHDOG=1"):
            self._last_watchdog = now

    def seconds_until_watchdog(self) -> float | None:
        """How long the loop may sleep before the next WATCHDOG=1 is due (None: no watchdog)."""
        if self.watchdog_interval is None:
            return None
        if self._last_watchdog is None:
            return 0.0
        return max(0.0, self._last_watchdog + self.watchdog_interval / 2 - self._clock())

    def stopping(self) -> None:
        self.send("STOPPING=1")

    # --- the wire ------------------------------------------------------------------------

    def send(self, message: str) -> bool:
        """One datagram; False when there is no socket or it could not be sent."""
        if self.socket_path is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
                # A full receive queue drops this message instead of stalling the loop.
                self._socket.setblocking(False)
            self._socket.sendto(message.encode(), self.socket_path)
        except OSError as exc:
            log.warning("cannot notify systemd at %r: %s", self.socket_path, exc)
            return False
        return True

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def summary(report: HealthReport, view: DaemonView) -> str:
    """One line for `systemctl status`: health, attached, last scan age, pending retries."""
    status = report.status.value
    if report.reasons:
        status += f" ({'; '.join(report.reasons)})"
    parts = [status]
    parts.append(f"{view.attached_now()} attached")
    if report.last_scan_at is None:
        parts.append("no scan yet")
    else:
        age = max(0.0, report.evaluated_at.seconds_since(report.last_scan_at))
        parts.append(f"last scan {age:.0f}s ago")
    if view.retry_depths is not None:
        try:
            pending = view.retry_depths().get(RetryState.PENDING.value, 0)
            parts.append(f"{pending} pending retries")
        except STORE_ERRORS as exc:  # a locked database leaves the count out, not the line
            log.debug("cannot read the retry queue: %s", exc)
    if view.unavailable:
        parts.append("NO LIMITS APPLIED")
    return "; ".join(parts).replace("\n", " ")
