"""/healthz and /metrics over a real socket on 127.0.0.1, against a real HealthTracker and a real
SQLite store.

The HTTP layer reads a daemon through its read-only view (ffrtmp.daemon.view.DaemonView), built
here from the tracker and store of each test, so the HTTP layer is tested alone; the full daemon
with its HTTP server is tested elsewhere.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import socket
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from ffrtmp.backoff import BackoffPolicy
from ffrtmp.candidate import Candidate
from ffrtmp.clock import Moment, system_now
from ffrtmp.daemon.view import DaemonView
from ffrtmp.errors import classify
from ffrtmp.health import HealthThresholds, HealthTracker
from ffrtmp.http import parse_address, start_http_server
from ffrtmp.identity import current_identity
from ffrtmp.lifecycle import Followed
from ffrtmp.metrics import Metrics
from ffrtmp.states import ErrorType


def view_of(health: HealthTracker, store=None, followed: tuple[Followed, ...] = ()) -> DaemonView:
    """The view a daemon with this tracker, store and followed processes gives its readers."""
    next_scan_at = system_now() + 10
    return DaemonView.of(
        health,
        # Read at each call, so a test can break the store's method after building the view.
        retry_depths=(lambda: store.retry_depths()) if store is not None else dict,
        followed=lambda: followed,
        next_scan_at=lambda: next_scan_at,
        discovery="poll",
    )


def fresh_tracker(started_at: Moment | None = None) -> HealthTracker:
    return HealthTracker(
        HealthThresholds(), started_at=system_now() if started_at is None else started_at
    )


# Bounds for a machine whose cores are all busy; a passing test takes milliseconds.
REQUEST_S = 30.0
# A request timeout no test outlasts: a server that waited for a silent client's would fail.
NEVER_S = 3600.0


@pytest.fixture
def serve():
    servers = []

    def start(view: DaemonView, metrics: Metrics | None = None, **options):
        server = start_http_server("127.0.0.1:0", view, metrics, **options)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.close()


def get(url: str, timeout: float = REQUEST_S) -> tuple[int, str, str]:
    """(status, content type, body), for error statuses too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers["Content-Type"], err.read().decode()


def healthz(server) -> tuple[int, dict]:
    status, content_type, body = get(server.url + "/healthz")
    assert content_type == "application/health+json"
    return status, json.loads(body)


def scrape(server) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}}."""
    status, content_type, body = get(server.url + "/metrics")
    assert status == 200
    assert content_type == CONTENT_TYPE_LATEST
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def record_scans(health: HealthTracker, results: str, now: Moment) -> None:
    """One scan per character ('o' ok, 'x' failed), the last one at `now`."""
    for i, mark in enumerate(results):
        health.record_scan(mark == "o", now - len(results) + 1 + i)


def add_pending_retry(store) -> None:
    """A real retry item: this test process registered, then an attach failure with EAGAIN."""
    ident = current_identity(os.getpid())
    candidate = Candidate(ident, "ffmpeg", ("ffmpeg",), os.getppid(), "ffmpeg")
    now = datetime.now(UTC)
    process_id, _ = store.register(candidate, job_id="auto-ffmpeg-test", limits=None, now=now)
    error = classify(OSError(errno.EAGAIN, "try again"))
    store.record_attach_failure(
        process_id, error, now=now, policy=BackoffPolicy(), retry_enabled=True
    )


# --- /healthz ------------------------------------------------------------------------------


def test_healthy_daemon_passes(serve):
    health = fresh_tracker()
    record_scans(health, "ooo", system_now())
    status, body = healthz(serve(view_of(health)))
    assert status == 200
    assert body["status"] == "pass"
    assert "output" not in body  # the draft: output is omitted for pass
    assert body["checks"]["scan:consecutiveFailures"][0]["observedValue"] == 0
    assert body["checks"]["scans:total"][0]["observedValue"] == 3


def test_three_scan_failures_warn_with_200(serve):
    health = fresh_tracker()
    record_scans(health, "oxxx", system_now())
    status, body = healthz(serve(view_of(health)))
    assert status == 200
    assert body["status"] == "warn"
    check = body["checks"]["scan:consecutiveFailures"][0]
    assert (check["observedValue"], check["status"]) == (3, "warn")
    assert "3 consecutive scan failures" in body["output"]


def test_five_scan_failures_fail_with_503(serve):
    health = fresh_tracker()
    record_scans(health, "oxxxxx", system_now())
    status, body = healthz(serve(view_of(health)))
    assert status == 503
    assert body["status"] == "fail"
    assert body["checks"]["scan:consecutiveFailures"][0]["status"] == "fail"
    assert body["checks"]["scans:failed"][0]["observedValue"] == 5


def test_a_stale_last_scan_fails_by_time_alone(serve):
    # Every scan succeeded, but the last one was 130 s ago: a stuck loop records nothing more.
    now = system_now()
    health = fresh_tracker(started_at=now - 200)
    health.record_scan(True, now - 130)
    status, body = healthz(serve(view_of(health)))
    assert status == 503
    assert body["status"] == "fail"
    stale = body["checks"]["scan:secondsSinceLastSuccess"][0]
    assert stale["status"] == "fail"
    assert stale["observedUnit"] == "s"
    assert 130 <= stale["observedValue"] < 140
    assert body["checks"]["scan:consecutiveFailures"][0]["status"] == "pass"
    assert "last successful scan" in body["output"]


class HandClock:
    """The daemon's clock, moved by the test's hand: both readings advance together."""

    def __init__(self, at: Moment) -> None:
        self.at = at

    def now(self) -> Moment:
        return self.at

    def wall(self) -> float:
        return self.at.wall

    def monotonic(self) -> float:
        return self.at.monotonic

    def advance(self, seconds: float) -> None:
        self.at = self.at + seconds


def test_health_ages_between_two_requests_without_any_event(serve):
    clock = HandClock(system_now())
    now = clock.now()
    health = fresh_tracker(started_at=now - 200)
    stale_after = health.thresholds.stale_scan_after
    health.record_scan(True, now - stale_after + 2)  # fresh for two more seconds
    view = dataclasses.replace(view_of(health), clock=clock)
    server = serve(view)
    assert healthz(server)[0] == 200
    clock.advance(1.9)
    assert healthz(server)[0] == 200
    clock.advance(0.2)  # nothing recorded in between: the clock alone turns it
    status, body = healthz(server)
    assert status == 503
    assert body["checks"]["scan:secondsSinceLastSuccess"][0]["observedValue"] == pytest.approx(
        stale_after + 0.1
    )


def test_healthz_shows_attached_processes_and_retry_items(serve, store):
    health = fresh_tracker()
    record_scans(health, "o", system_now())
    ident = current_identity(os.getpid())
    followed = (
        Followed(1, ident, "auto-ffmpeg-1", governed=True),
        Followed(2, ident, "auto-ffmpeg-2", governed=False),
    )
    daemon = view_of(health, store, followed)
    add_pending_retry(store)
    _, body = healthz(serve(daemon))
    assert body["checks"]["processes:attached"][0]["observedValue"] == 1
    assert body["checks"]["retries:items"][0]["observedValue"] == {"pending": 1}


# --- /metrics ------------------------------------------------------------------------------


def test_metrics_families_and_values(serve, store):
    now = system_now()
    health = fresh_tracker(started_at=now - 60)
    record_scans(health, "oooxxx", now)  # degraded
    health.record_error(ErrorType.RESOURCE)
    health.record_error(ErrorType.RESOURCE)
    health.record_error("something-else")  # counted as unknown: the label set stays fixed
    ident = current_identity(os.getpid())
    followed = (
        Followed(1, ident, "auto-ffmpeg-1", governed=True),
        Followed(2, ident, "auto-ffmpeg-2", governed=True),
        Followed(3, ident, "auto-ffmpeg-3", governed=False),
    )
    daemon = view_of(health, store, followed)
    add_pending_retry(store)
    metrics = Metrics(daemon)
    metrics.observe_scan(0.004, ok=True)
    metrics.observe_scan(0.3, ok=False)
    metrics.discovered(2)
    metrics.overflow()

    samples = scrape(serve(daemon, metrics))

    assert samples["ffrtmp_scans_total"] == {(("result", "ok"),): 1, (("result", "failed"),): 1}
    assert samples["ffrtmp_scan_duration_seconds_count"][()] == 2
    assert samples["ffrtmp_scan_duration_seconds_sum"][()] == pytest.approx(0.304)
    buckets = samples["ffrtmp_scan_duration_seconds_bucket"]
    assert buckets[(("le", "0.005"),)] == 1
    assert buckets[(("le", "0.25"),)] == 1
    assert buckets[(("le", "0.5"),)] == 2
    assert samples["ffrtmp_processes_discovered_total"][()] == 2
    assert samples["ffrtmp_event_overflows_total"][()] == 1
    assert samples["ffrtmp_processes_attached"][()] == 2
    assert samples["ffrtmp_health_status"][()] == 1
    assert samples["ffrtmp_last_successful_scan_timestamp_seconds"][()] == pytest.approx(
        (now - 3).wall
    )
    assert samples["ffrtmp_errors_total"] == {
        (("type", "transient"),): 0,
        (("type", "permanent"),): 0,
        (("type", "rate_limit"),): 0,
        (("type", "resource"),): 2,
        (("type", "unknown"),): 1,
    }
    assert samples["ffrtmp_retry_items"] == {
        (("state", "pending"),): 1,
        (("state", "succeeded"),): 0,
        (("state", "dead"),): 0,
        (("state", "cancelled"),): 0,
    }
    labels = {name for series in samples.values() for key in series for name, _ in key}
    assert labels <= {"result", "le", "type", "state"}  # never a pid or a job id


def test_fresh_metrics_preinitialise_every_label_and_health_goes_unhealthy(serve, store):
    now = system_now()
    health = fresh_tracker(started_at=now - 200)  # no scan at all for 200 s
    daemon = view_of(health, store)
    samples = scrape(serve(daemon))  # without the loop's Metrics: one of the view alone
    assert samples["ffrtmp_scans_total"] == {(("result", "ok"),): 0, (("result", "failed"),): 0}
    assert set(samples["ffrtmp_errors_total"].values()) == {0}
    assert len(samples["ffrtmp_errors_total"]) == len(ErrorType)
    assert samples["ffrtmp_health_status"][()] == 2
    assert samples["ffrtmp_last_successful_scan_timestamp_seconds"][()] == 0
    assert samples["ffrtmp_processes_attached"][()] == 0
    assert samples["ffrtmp_internal_errors_total"][()] == 0


def test_metrics_have_their_own_registry():
    from prometheus_client import REGISTRY

    Metrics(None).observe_scan(0.01, ok=True)
    assert REGISTRY.get_sample_value("ffrtmp_scans_total", {"result": "ok"}) is None


def test_retry_depths_are_cached_between_scrapes(store):
    reads = []
    daemon = view_of(fresh_tracker(), store)
    clock = [100.0]
    metrics = Metrics(daemon, cache_seconds=2.0, clock=lambda: clock[0])
    real_read = store.retry_depths
    store.retry_depths = lambda: reads.append(1) or real_read()  # counts the real reads
    metrics.render()
    metrics.render()
    assert len(reads) == 1
    add_pending_retry(store)
    clock[0] += 2.5
    text = metrics.render().decode()
    assert len(reads) == 2
    assert 'ffrtmp_retry_items{state="pending"} 1.0' in text


def test_an_unreadable_store_leaves_the_rest_of_the_scrape(serve, store):
    health = fresh_tracker()
    daemon = view_of(health, store)
    record_scans(health, "o", system_now())

    def broken() -> dict:
        raise OSError(errno.EIO, "disk gone")

    store.retry_depths = broken
    samples = scrape(serve(daemon))
    assert "ffrtmp_retry_items" not in samples
    assert samples["ffrtmp_health_status"][()] == 0
    status, body = healthz(serve(daemon))
    assert status == 200
    assert "retries:items" not in body["checks"]


# --- the server ----------------------------------------------------------------------------


def test_unknown_path_is_404_and_other_methods_405(serve):
    server = serve(view_of(fresh_tracker()))
    assert get(server.url + "/nope")[0] == 404
    for method in ("POST", "DELETE", "PUT", "HEAD"):
        request = urllib.request.Request(server.url + "/healthz", method=method, data=b"")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=REQUEST_S)
        assert caught.value.code == 405, method
        assert caught.value.headers["Allow"] == "GET"


def test_a_silent_client_does_not_block_healthz(serve):
    server = serve(view_of(fresh_tracker()), request_timeout=NEVER_S)
    silent = socket.create_connection(server.address)  # connects, never sends a byte
    try:
        status, _, _ = get(server.url + "/healthz")
        assert status == 200
        # Answered while the silent client still holds its connection: not after it.
        with pytest.raises(BlockingIOError):
            silent.recv(1, socket.MSG_DONTWAIT)
    finally:
        silent.close()


def test_a_silent_client_is_dropped_after_the_request_timeout():
    server = start_http_server("127.0.0.1:0", view_of(fresh_tracker()), request_timeout=0.3)
    silent = socket.create_connection(server.address)
    try:
        silent.settimeout(REQUEST_S)
        assert silent.recv(1) == b""  # the server closed the connection
    finally:
        silent.close()
        server.close()


def test_close_frees_the_port_without_waiting_for_a_silent_client():
    server = start_http_server("127.0.0.1:0", view_of(fresh_tracker()), request_timeout=NEVER_S)
    silent = socket.create_connection(server.address)
    closing = threading.Thread(target=server.close)
    try:
        closing.start()
        closing.join(timeout=REQUEST_S)
        assert not closing.is_alive(), "close() waited for the silent client"
    finally:
        silent.close()
        closing.join()
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(server.address)  # would raise EADDRINUSE if still listening


def test_concurrent_requests_all_answered(serve):
    server = serve(view_of(fresh_tracker()))
    results: list[int] = []

    def worker() -> None:
        results.append(get(server.url + "/metrics")[0])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=REQUEST_S)
    assert results == [200] * 8


def test_ipv6_loopback(serve):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    try:
        server = start_http_server("[::1]:0", view_of(fresh_tracker()))
    except OSError as exc:
        pytest.skip(f"cannot bind ::1 here: {exc}")
    try:
        assert server.url.startswith("http://[::1]:")
        assert get(server.url + "/healthz")[0] == 200
    finally:
        server.close()


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:9464", ("::1", 9464)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
    ],
)
def test_parse_address(address, expected):
    assert parse_address(address) == expected


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("9464", "must be HOST:PORT"),
        (":9464", "names no host"),
        ("127.0.0.1:http", "port number from 0 to 65535"),
        ("127.0.0.1:70000", "port number from 0 to 65535"),
        ("::1:9464", "must be HOST:PORT"),
        ("[::1]9464", "must look like [::1]:9464"),
    ],
)
def test_bad_addresses_are_refused_in_one_sentence(address, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_address(address)


def test_a_taken_port_names_the_address():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(OSError, match=f"cannot listen on {address}") as caught:
            start_http_server(address, view_of(fresh_tracker()))
        assert caught.value.errno == errno.EADDRINUSE
