"""Rows printed for people (an aligned table that fits the terminal) or for scripts (JSON,
CSV with raw values). The table machinery is ffrtmp.cli.table; units are ffrtmp.cli.human."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click

from ffrtmp.cli.human import local_time, relative  # noqa: F401  (used by other commands)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def _csv_cell(value: Any) -> Any:
    """CSV holds text: times as ISO 8601 UTC, booleans and lists and objects as JSON writes
    them (true, false), the rest as stored (control characters included: CSV quotes, it does
    not escape)."""
    if isinstance(value, bool | list | tuple | dict):
        return json.dumps(value, ensure_ascii=False)
    return _plain(value)


def write_json(rows: Sequence[dict], names: Sequence[str]) -> None:
    """A JSON list of objects; json escapes every control character (\\u001b)."""
    click.echo(json.dumps([{k: _plain(r.get(k)) for k in names} for r in rows], indent=2))


def write_csv(rows: Sequence[dict], names: Sequence[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(names), extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _csv_cell(r.get(k)) for k in names})
    click.echo(buffer.getvalue(), nl=False)


def emit(
    rows: Sequence[dict],
    columns: Sequence[str],
    *,
    as_json: bool = False,
    as_csv: bool = False,
    empty: str = "nothing to show",
) -> None:
    """Rows of columns known only by name (`sql`, `scan`): the table fits the terminal by
    cutting the widest columns; JSON and CSV carry them whole."""
    from ffrtmp.cli.table import emit_listing, plain_listing

    emit_listing(rows, plain_listing(columns), as_json=as_json, as_csv=as_csv, empty=empty)
