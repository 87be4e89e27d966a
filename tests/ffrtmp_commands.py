"""`ffrtmp` commands as a test runs them: as a real process, or in the test's own process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result
from helpers_processes import STATE_TIMEOUT_S

FFRTMP = [sys.executable, "-m", "ffrtmp.cli"]


def ffrtmp(*args, timeout: float = STATE_TIMEOUT_S, **kwargs) -> subprocess.CompletedProcess:
    """A real `ffrtmp` process run to its end, its output captured as text."""
    return subprocess.run(
        [*FFRTMP, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def invoke(db_path: Path | str, *args, env: dict | None = None) -> Result:
    """`ffrtmp ARGS --db DB_PATH` through click's runner, in this process: quick, and what it
    raises shows with its traceback."""
    from ffrtmp.cli import main

    return CliRunner().invoke(main, [*map(str, args), "--db", str(db_path)], env=env)
