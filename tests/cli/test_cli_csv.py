"""CSV carries what JSON carries, written the same way: a boolean is true or false in both."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

from click.testing import CliRunner
from test_cli_queries import register

from ffrtmp.cli import main


def test_csv_writes_booleans_as_json_does(store, db_path):
    now = datetime.now(UTC)
    killed = register(store, 53001, age_s=30)
    ended = register(store, 53002, age_s=20)
    running = register(store, 53003, age_s=10)
    store.record_exit(killed, now=now, exit_code=None, exit_signal=9, reason=None, oom_killed=True)
    store.record_exit(ended, now=now, exit_code=0, exit_signal=None, reason=None, oom_killed=False)

    def listed(fmt: str) -> str:
        result = CliRunner().invoke(
            main, ["processes", "list", fmt, "-o", "id,oom_killed", "--db", str(db_path)]
        )
        assert result.exit_code == 0, result.output
        return result.stdout

    as_csv = {int(r["id"]): r["oom_killed"] for r in csv.DictReader(io.StringIO(listed("--csv")))}
    as_json = {r["id"]: r["oom_killed"] for r in json.loads(listed("--json"))}
    assert as_csv == {killed: "true", ended: "false", running: ""}
    assert as_json == {killed: True, ended: False, running: None}
