"""Rows printed for people (an aligned table that fits the terminal) or for scripts (JSON,
CSV with raw values). The table machinery is ffrtmp.cli.table, JSON and CSV are
ffrtmp.cli.formats; units are ffrtmp.cli.human. This module imports them, never the reverse."""

from __future__ import annotations

from collections.abc import Sequence

from ffrtmp.cli.human import local_time, relative  # noqa: F401  (used by other commands)


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
