"""`--http HOST:PORT`: /healthz and /metrics for load balancers, systemd and Prometheus.

The server runs in threads of its own (one per connection), so a slow or silent client holds
one of those threads for at most the request timeout and never the scan loop. Handlers only
take the health tracker's short lock and the metrics cache lock; nothing the loop holds long.

/healthz follows the IETF health-check draft (draft-inadarei-api-health-check): the body is
`application/health+json`, `status` is pass / warn / fail for healthy / degraded / unhealthy,
and the HTTP status is 200 for pass and warn, 503 for fail. Health is evaluated at request time,
so a loop that stopped scanning turns to fail by the clock alone.

An address that cannot be bound (another user took the port first, an address not up yet) does
not stop the daemon: `Endpoint` logs it, reports it to health (degraded) and binds again with
a growing pause (BIND_RETRY_FIRST_S doubling up to BIND_RETRY_MAX_S) until it succeeds.

`unix:PATH` serves on a unix socket instead: in a folder only the daemon's user can write, no
other user can take it first, and its file mode (0660) decides who may ask.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os
import socket
import stat
import threading
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST

from ffrtmp import __version__, defaults
from ffrtmp.clock import Moment
from ffrtmp.health import assess
from ffrtmp.metrics import Metrics
from ffrtmp.states import HealthStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    from ffrtmp.daemon.view import DaemonView

log = logging.getLogger(__name__)

HEALTH_CONTENT_TYPE = "application/health+json"
DRAFT_STATUS = {
    HealthStatus.HEALTHY: "pass",
    HealthStatus.DEGRADED: "warn",
    HealthStatus.UNHEALTHY: "fail",
}
ROUTES = ("/healthz", "/metrics")
BIND_RETRY_FIRST_S = 1.0
BIND_RETRY_MAX_S = 60.0
HEALTH_PART = "http"


UNIX_PREFIX = "unix:"
UNIX_SOCKET_MODE = 0o660


def unix_socket_path(address: str) -> str | None:
    """The socket path of 'unix:/run/ffrtmp/http.sock'; None for a HOST:PORT address."""
    text = address.strip()
    if not text.startswith(UNIX_PREFIX):
        return None
    path = text[len(UNIX_PREFIX) :]
    if not path.startswith("/"):
        raise ValueError(f"HTTP address {address!r} must name an absolute socket path")
    return path


def parse_address(address: str) -> tuple[str, int]:
    """'127.0.0.1:9464', '[::1]:9464' or 'localhost:9464' -> (host, port)."""
    text = address.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else None
        if not sep or port_text is None:
            raise ValueError(f"HTTP address {address!r} must look like [::1]:9464")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(
                f"HTTP address {address!r} must be HOST:PORT, e.g. {defaults.HTTP_ADDRESS} "
                "(an IPv6 host in brackets: [::1]:9464)"
            )
    if not host:
        raise ValueError(f"HTTP address {address!r} names no host, e.g. {defaults.HTTP_ADDRESS}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"HTTP address {address!r} needs a port number from 0 to 65535")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpServer:
    """A running server; `close()` stops it and frees the port."""

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return host, port

    @property
    def url(self) -> str:
        if isinstance(self._server, _UnixServer):
            return f"{UNIX_PREFIX}{self._server.server_address}"
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_http_server(
    address: str,
    view: DaemonView,
    metrics: Metrics | None = None,
    *,
    request_timeout: float = defaults.HTTP_REQUEST_TIMEOUT_SECONDS,
) -> HttpServer:
    """Serve /healthz and /metrics of the daemon `view` shows on `address` (HOST:PORT; port 0
    picks one). Without `metrics` (the loop's counters), a Metrics of the view alone is served:
    the scrape-time values (health, attached, retries, errors) are there either way."""
    socket_path = unix_socket_path(address)
    if socket_path is None:
        host, port = parse_address(address)
        server_class, bind_to = (_Server6 if ":" in host else _Server), (host, port)
    else:
        host, server_class, bind_to = "localhost", _UnixServer, socket_path
    if metrics is None:
        metrics = Metrics(view)
    try:
        server = server_class(bind_to, _Handler)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OSError(exc.errno or errno.EINVAL, f"cannot listen on {address}: {reason}") from None
    server.view = view
    server.metrics = metrics
    server.request_timeout = request_timeout
    thread = threading.Thread(
        target=server.serve_forever, name="ffrtmp-http", kwargs={"poll_interval": 0.2}
    )
    thread.daemon = True
    thread.start()
    running = HttpServer(server, thread)
    if not is_loopback(host):
        log.warning("serving health and metrics without authentication on %s", running.url)
    log.info("serving /healthz and /metrics on %s", running.url)
    return running


class Endpoint:
    """The --http address of a daemon: served once it can be bound, tried again until then.
    While it is not served, `report_problem` (the health tracker's set_problem) is told why,
    which makes the daemon degraded."""

    def __init__(
        self,
        address: str,
        view: DaemonView,
        metrics: Metrics | None,
        report_problem: Callable[[str, str | None], None],
    ) -> None:
        self.address = address
        self.view = view
        self.metrics = metrics
        self._report_problem = report_problem
        self.server: HttpServer | None = None
        self.next_try_at: Moment | None = None
        self._pause = BIND_RETRY_FIRST_S

    def bind(self, now: Moment) -> bool:
        """Try to serve now; True when served."""
        try:
            self.server = start_http_server(self.address, self.view, self.metrics)
        except OSError as exc:
            self.next_try_at = now + self._pause
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            reason = f"HTTP endpoint {self.address} not served: {why}"
            log.error("%s; trying again in %.0fs", reason, self._pause)
            self._pause = min(BIND_RETRY_MAX_S, self._pause * 2)
            self._report_problem(HEALTH_PART, reason)
            return False
        self.next_try_at = None
        self._report_problem(HEALTH_PART, None)
        return True

    def retry_due(self, now: Moment) -> None:
        if self.server is None and self.next_try_at is not None and now >= self.next_try_at:
            self.bind(now)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


# --- the documents -------------------------------------------------------------------------


def health_document(view: DaemonView, metrics: Metrics | None, now: Moment) -> tuple[int, dict]:
    """(HTTP status, body) of /healthz at `now`; the times it shows are wall times."""
    report = view.evaluate(now)

    def _iso(moment: Moment | None) -> str | None:
        return None if moment is None else _iso_wall(moment.wall)

    thresholds = view.thresholds()
    draft_status = DRAFT_STATUS[report.status]
    ever = report.last_successful_scan_at is not None
    without_success = (
        report.seconds_since_last_successful_scan
        if ever
        else max(0.0, report.evaluated_at.seconds_since(report.started_at))
    )
    # Each rule judged alone, with the tracker's own thresholds, gives that check its status.
    scan_status, _ = assess(thresholds, report.consecutive_scan_failures, 0, 0.0)
    stale_status, _ = assess(thresholds, 0, 0, without_success, ever)
    attach_status, _ = assess(thresholds, 0, report.consecutive_attach_failures, 0.0)
    checks = {
        "scan:consecutiveFailures": [
            _check(
                report.consecutive_scan_failures,
                DRAFT_STATUS[scan_status],
                at=_iso(report.last_scan_at),
                degradedAt=thresholds.degraded_scan_failures,
                unhealthyAt=thresholds.unhealthy_scan_failures,
            )
        ],
        "scan:secondsSinceLastSuccess": [
            _check(
                round(without_success, 3),
                DRAFT_STATUS[stale_status],
                unit="s",
                at=_iso(report.last_successful_scan_at),
                unhealthyAbove=thresholds.stale_scan_after,
            )
        ],
        "attach:consecutiveFailures": [
            _check(
                report.consecutive_attach_failures,
                DRAFT_STATUS[attach_status],
                degradedAt=thresholds.degraded_attach_failures,
            )
        ],
        "scans:total": [_check(report.total_scans, "pass")],
        "scans:failed": [_check(report.total_scan_failures, "pass")],
        "attaches:total": [_check(report.total_attaches, "pass")],
        "attaches:failed": [_check(report.total_attach_failures, "pass")],
        "errors:byType": [_check(dict(report.errors_by_type), "pass")],
    }
    checks["processes:attached"] = [_check(view.attached_now(), "pass")]
    retry_items = metrics.retry_items.get() if metrics is not None else None
    if retry_items is not None:
        checks["retries:items"] = [_check(retry_items, "pass")]
    body = {
        "status": draft_status,
        "version": __version__,
        "serviceId": "ffrtmp-watch",
        "description": "ffrtmp watch daemon",
        "checks": checks,
        "notes": _notes(view, now),
        # Beyond the draft, as `ffrtmp health` and the snapshots name them.
        "status_since": _iso(report.status_since),
        "last_successful_attach_at": _iso(report.last_successful_attach_at),
    }
    if report.reasons:
        body["output"] = "; ".join(report.reasons)
    code = HTTPStatus.SERVICE_UNAVAILABLE if draft_status == "fail" else HTTPStatus.OK
    return int(code), body


def _check(
    value: object,
    status: str,
    *,
    unit: str | None = None,
    at: str | None = None,
    **thresholds: float,
) -> dict:
    entry: dict = {"componentType": "component", "observedValue": value, "status": status}
    if unit:
        entry["observedUnit"] = unit
    if at:
        entry["time"] = at
    entry.update(thresholds)
    return entry


def _notes(view: DaemonView, now: Moment) -> list[str]:
    notes = [f"discovery: {view.discovery}"]
    unavailable = view.unavailable
    if unavailable:
        notes.append(f"no resource limits are applied: {unavailable}")
    next_scan_at = view.next_scan_at()
    if next_scan_at is not None:
        notes.append(f"next full scan due in {max(0.0, next_scan_at.seconds_since(now)):.1f}s")
    return notes


def _iso_wall(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


# --- the server ----------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # close() never waits for a client that sends nothing
    # Set by start_http_server before serving.
    view: DaemonView | None = None
    metrics: Metrics | None = None
    request_timeout: float = defaults.HTTP_REQUEST_TIMEOUT_SECONDS


class _Server6(_Server):
    address_family = socket.AF_INET6


class _UnixServer(_Server):
    address_family = socket.AF_UNIX

    def server_bind(self) -> None:
        path = self.server_address
        # A socket left by a daemon that died is ours to replace; any other file is not.
        try:
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise FileExistsError(errno.EEXIST, "a file that is not a socket is there")
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.socket.bind(path)
        self._bound_path = path  # removed at close: only a socket this server made
        os.chmod(path, UNIX_SOCKET_MODE)
        self.server_name, self.server_port = "localhost", 0

    def server_close(self) -> None:
        super().server_close()
        path = getattr(self, "_bound_path", None)
        if path is not None:
            try:
                os.unlink(path)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = f"ffrtmp/{__version__}"

    def address_string(self) -> str:
        # A unix socket's client has no address: http.server would index an empty string.
        return self.client_address[0] if isinstance(self.client_address, tuple) else "unix"

    def setup(self) -> None:
        # StreamRequestHandler applies `timeout` to the connection socket in setup().
        self.timeout = self.server.request_timeout
        super().setup()

    def do_GET(self) -> None:  # noqa: N802 (the name http.server dispatches to)
        path = urlsplit(self.path).path
        try:
            if path == "/healthz":
                view = self.server.view
                code, body = health_document(view, self.server.metrics, view.clock.now())
                payload = (json.dumps(body, indent=2) + "\n").encode()
                self._send(code, HEALTH_CONTENT_TYPE, payload)
            elif path == "/metrics":
                self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, self.server.metrics.render())
            else:
                self._send_text(HTTPStatus.NOT_FOUND, f"no such path; try {', '.join(ROUTES)}")
        except Exception as exc:  # report it to the client; the server thread lives on
            log.warning("GET %s failed: %s", path, exc, exc_info=True)
            self._send_text(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")

    def __getattr__(self, name: str):
        # http.server answers methods without a do_<METHOD> with 501; every method other
        # than GET is a known one we refuse, so it gets 405.
        if name.startswith("do_"):
            return self._method_not_allowed
        raise AttributeError(name)

    def _method_not_allowed(self) -> None:
        self._send_text(HTTPStatus.METHOD_NOT_ALLOWED, "only GET is allowed", Allow="GET")

    def _send_text(self, code: int, text: str, **headers: str) -> None:
        self._send(code, "text/plain; charset=utf-8", (text + "\n").encode(), **headers)

    def _send(self, code: int, content_type: str, payload: bytes, **headers: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        # Not stderr: scrapes every few seconds would flood the journal.
        log.debug("%s %s", self.address_string(), format % args)
