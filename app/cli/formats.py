"""Rows for scripts: JSON and CSV with raw values, times as ISO 8601 UTC. The tables for people
are ffrtmp.cli.table's; ffrtmp.cli.output chooses between them."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click


def plain(value: Any) -> Any:
    """A value as JSON holds it: a time as ISO 8601 UTC ('2026-01-31T12:00:00Z')."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def _csv_cell(value: Any) -> Any:
    """CSV holds text: times as ISO 8601 UTC, booleans and lists and objects as JSON writes
    them (true, false), the rest as stored (control characters included: CSV quotes, it does
    not escape)."""
    if isinstance(value, bool | list | tuple | dict):
        return json.dumps(value, ensure_ascii=False)
    return plain(value)


def write_json(rows: Sequence[dict], names: Sequence[str]) -> None:
    """A JSON list of objects; json escapes every control character (\\u001b)."""
    click.echo(json.dumps([{k: plain(r.get(k)) for k in names} for r in rows], indent=2))


def write_csv(rows: Sequence[dict], names: Sequence[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(names), extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _csv_cell(r.get(k)) for k in names})
    click.echo(buffer.getvalue(), nl=False)
