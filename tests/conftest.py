"""Fixtures shared by the whole suite: databases on tmp_path and real child processes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import parts
import pytest

# The real cgroup hierarchy here (v1 on the host, v2 in the VM of `make test-v2`): its fixtures and
# report header register by being names of this module.
from cgroup_hierarchy import (  # noqa: F401
    cgroup_hierarchy,
    job_cgroups,
    pytest_report_header,
    real_cgroup_parent,
)
from helpers_processes import ProcessSpawner, make_transcoder

from ffrtmp import failpoints

if TYPE_CHECKING:
    from ffrtmp.daemon import Daemon


# What a fixture needs is a marker on every test that takes it (directly or through another
# fixture), so `-m "not root"` selects what runs as any user and `-m "not fleet"` what runs without
# PostgreSQL. The fixture itself skips, saying why, where its need is not met.
MARKERS_OF_FIXTURES = {
    "root": ("root",),
    "cgroup_hierarchy": ("root",),  # real cgroups: v1 writes, or the VM's delegated v2
    "proc_connector": ("root",),  # the kernel's process events (netlink, CAP_NET_ADMIN)
    "postgres_server": ("root", "fleet"),  # started as the postgres user
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for fixture, markers in MARKERS_OF_FIXTURES.items():
            if fixture in names:
                for marker in markers:
                    if item.get_closest_marker(marker) is None:
                        item.add_marker(marker)


def pytest_terminal_summary(terminalreporter) -> None:
    """One line naming every part of the suite that did not run here, and what would run it."""
    missing = [{"name": p.name, "needs": p.needs} for p in parts.not_run()]
    if missing:
        terminalreporter.write_line(parts.summary_line(missing), yellow=True, bold=True)
    parts.record(missing)


@pytest.fixture
def root() -> None:
    """For a test or fixture that needs root (mounts, chown, other users' processes)."""
    if os.geteuid() != 0:
        parts.skip(parts.AS_ROOT, "not root")


@pytest.fixture(scope="session")
def proc_connector() -> None:
    """The kernel's process events connector, which the daemon's event discovery reads."""
    from ffrtmp.proc_events import listener_available

    reason = listener_available()
    if reason is not None:
        parts.skip(parts.PROC_EVENTS, f"no process events: {reason}")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ffrtmp.db"


@pytest.fixture
def store(db_path: Path):
    from ffrtmp.database import open_for_writing
    from ffrtmp.store import Store

    s = Store(open_for_writing(db_path))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(autouse=True)
def _no_failpoints() -> Iterator[None]:
    """A failpoint armed by one test never leaks into the next."""
    failpoints.configure("")
    yield
    failpoints.configure("")


@pytest.fixture
def transcoder(tmp_path: Path) -> Path:
    """A copy of `sleep` named TEST_TARGET in the test's own folder: a process of the test's
    own that daemon_harness.write_config's rule matches (by this very file), and nothing on
    the machine does."""
    directory = tmp_path / "bin"
    directory.mkdir(exist_ok=True)
    return make_transcoder(directory)


@pytest.fixture
def named_ffmpeg(tmp_path: Path) -> Path:
    """A copy of `sleep` named ffmpeg in the test's own folder, for the few tests of what ffrtmp
    does with a default target's name: `attach` without --force knows only those, and the
    original daemon's config files name them. Unlike `transcoder`'s, its processes would be
    governed by an `ffrtmp watch` running on the machine with the default rules."""
    directory = tmp_path / "ffmpeg-bin"
    directory.mkdir(exist_ok=True)
    return make_transcoder(directory, "ffmpeg")


@pytest.fixture
def spawn() -> Iterator[ProcessSpawner]:
    """Real processes for a test, each killed by its pid and reaped at the end."""
    spawner = ProcessSpawner()
    try:
        yield spawner
    finally:
        spawner.close()


@pytest.fixture
def daemons(spawn) -> Iterator[Callable[..., Daemon]]:
    """Makes in-process daemons (daemon_harness.make_daemon's arguments) and always closes each
    one at the end of the test: its cgroups released, its store closed. It takes `spawn` so that
    it closes the daemons before the test's processes are killed, as a test's own `finally`
    would."""
    from daemon_harness import close, make_daemon

    made: list[Daemon] = []

    def make(*args, **kwargs) -> Daemon:
        daemon = make_daemon(*args, **kwargs)
        made.append(daemon)
        return daemon

    try:
        yield make
    finally:
        for daemon in reversed(made):
            close(daemon)


@pytest.fixture(scope="session")
def postgres_server():
    """One private PostgreSQL 15 cluster for the session (tests/postgres_server.py), stopped and
    removed at its end."""
    from postgres_server import PostgresServer, unavailable_reason

    reason = unavailable_reason()
    if reason:
        # .ci/run installs PostgreSQL: under CI a missing server is a failure, not a skip.
        if os.environ.get("CI"):
            pytest.fail(f"the fleet tests cannot run under CI: {reason}")
        parts.skip(parts.FLEET, reason)
    server = PostgresServer.create()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def central_db(postgres_server) -> str:
    """A new, empty database on the private server; its superuser URL over the socket."""
    return postgres_server.admin_url(postgres_server.new_database())
