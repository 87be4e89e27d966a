"""Fixtures shared by the whole suite: databases on tmp_path and real child processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# The real cgroup hierarchy here (v1 on the host, v2 in the VM of `make test-v2`): its fixtures and
# report header register by being names of this module.
from cgroup_hierarchy import (  # noqa: F401
    cgroup_hierarchy,
    job_cgroups,
    pytest_report_header,
    real_cgroup_parent,
)
from helpers_processes import ProcessSpawner, make_ffmpeg

from ffrtmp import failpoints


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
def fake_ffmpeg(tmp_path: Path) -> Path:
    """A copy of `sleep` named ffmpeg: matches the default rule, does nothing harmful."""
    directory = tmp_path / "bin"
    directory.mkdir(exist_ok=True)
    return make_ffmpeg(directory)


@pytest.fixture
def spawn() -> Iterator[ProcessSpawner]:
    """Real processes for a test, each killed by its pid and reaped at the end."""
    spawner = ProcessSpawner()
    try:
        yield spawner
    finally:
        spawner.close()


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
        pytest.skip(reason)
    server = PostgresServer.create()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def central_db(postgres_server) -> str:
    """A new, empty database on the private server; its superuser URL over the socket."""
    return postgres_server.admin_url(postgres_server.new_database())
