"""Fixtures shared by the whole suite: databases on tmp_path and real child processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import failpoints


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ffrtmp.db"


@pytest.fixture
def store(db_path: Path):  # noqa: ANN201
    from app.database import open_for_writing
    from app.store import Store

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
    target = tmp_path / "bin" / "ffmpeg"
    target.parent.mkdir(exist_ok=True)
    shutil.copy(shutil.which("sleep"), target)
    return target


class Spawner:
    """Starts real processes and guarantees each is killed (by its pid) and reaped."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen] = []

    def __call__(self, argv: list[str], **kwargs) -> subprocess.Popen:  # noqa: ANN003
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        child = subprocess.Popen([str(a) for a in argv], **kwargs)
        self.children.append(child)
        return child

    def cleanup(self) -> None:
        for child in self.children:
            if child.poll() is None:
                try:
                    os.kill(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def spawn() -> Iterator[Spawner]:
    spawner = Spawner()
    try:
        yield spawner
    finally:
        spawner.cleanup()
