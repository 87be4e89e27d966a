"""Rows printed for people (an aligned table) or for scripts (JSON, CSV)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def relative(value: datetime | None, now: datetime | None = None) -> str:
    """'3m ago' / 'in 20s' for people."""
    if value is None:
        return "-"
    from ffrtmp.durations import format_duration

    delta = ((now or datetime.now(UTC)) - value).total_seconds()
    if abs(delta) < 1:
        return "now"
    text = format_duration(abs(delta)) if abs(delta) >= 1 else "0s"
    return f"{text} ago" if delta > 0 else f"in {text}"


def local_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return f"{local_time(value)} ({relative(value)})"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return str(value)


def render_table(columns: Sequence[str], rows: Sequence[dict]) -> str:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    for r in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def emit(
    rows: Sequence[dict],
    columns: Sequence[str],
    *,
    as_json: bool = False,
    as_csv: bool = False,
    empty: str = "nothing to show",
) -> None:
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    if rows and "node" in rows[0] and "node" not in columns:
        columns = ("node", *columns)  # rows of the fleet's central database (ffrtmp.fleet.reads)
    if as_json:
        click.echo(json.dumps([{k: _plain(v) for k, v in r.items()} for r in rows], indent=2))
    elif as_csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: _plain(r.get(k)) for k in columns})
        click.echo(buffer.getvalue(), nl=False)
    elif not rows:
        click.echo(empty)
    else:
        click.echo(render_table(columns, rows))
