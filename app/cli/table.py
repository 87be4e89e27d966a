"""Listings that fit the terminal: which columns a listing has, how each is shown to people,
how wide the table may be, and the `-o/--columns` option that chooses among them.

A listing's rows are the dicts its query returns (raw values). A `Column` only says how one
key is shown: its header, its human text, its colour, and whether it may be cut with an
ellipsis to fit. A key without a declared Column is shown by the unit its name carries
(`human.by_name`: `*_bytes` in MiB, `*_seconds` as 1m30s, `*_at` as a local time), so a new
column of a query appears in JSON, CSV and `-o` at once, and gets its own look with one line.

Width: `COLUMNS` when set, else the terminal's width when stdout is a terminal; when it is not
(a pipe, a file) nothing is cut, like ps and systemctl, so `| grep` sees the full text.
"""

from __future__ import annotations

import os
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import click

from ffrtmp.cli import human

GAP = "  "
ELLIPSIS = "…"
MIN_CUT_WIDTH = 6  # a column cut to fit keeps at least this many characters (or its header)
NODE_KEY = "node"  # the node's label, on each row read from a central database without --node


@dataclass(frozen=True)
class Column:
    """How one key of a listing's rows is shown in a table.

    `value` derives a column that is not stored (how a process ended, its run time) from the
    raw row; `show` writes the value for people (default: by the unit of its name); `colour`
    names a colour for the cell; `shrink` lets the column be cut with an ellipsis to fit."""

    name: str
    header: str | None = None
    show: Callable[[Any, dict], str] | None = None
    value: Callable[[dict], Any] | None = None
    colour: Callable[[Any, dict], str | None] | None = None
    shrink: bool = False
    right: bool | None = None  # right-aligned; None: when every value is a number

    def raw(self, row: dict) -> Any:
        return self.value(row) if self.value is not None else row.get(self.name)

    def text(self, row: dict) -> str:
        value = self.raw(row)
        if self.show is not None:
            return human.printable(self.show(value, row)) if value is not None else "-"
        return human.by_name(self.name, value)

    @property
    def title(self) -> str:
        return self.header or self.name.upper()


@dataclass(frozen=True)
class Listing:
    """The columns of one listing: `raw`, the keys its query returns (all of them go to JSON
    and CSV unless -o says otherwise); `declared`, the Columns with their own look or derived
    values; `default`, the columns a table shows without -o."""

    raw: Sequence[str]
    default: Sequence[str]
    declared: Sequence[Column] = ()
    _by_name: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {c.name: c for c in self.declared})
        unknown = [n for n in self.default if n not in self.names]
        if unknown:
            raise ValueError(f"default columns {unknown} are not columns of the listing")

    @property
    def names(self) -> list[str]:
        derived = [c.name for c in self.declared if c.name not in self.raw]
        return [*self.raw, *derived]

    def column(self, name: str) -> Column:
        return self._by_name.get(name) or Column(name)

    def choose(self, wanted: Sequence[str] | None, *, for_table: bool) -> list[Column]:
        """The Columns to print: those asked for with -o, else the table's defaults (a table)
        or every raw column (JSON, CSV)."""
        if wanted:
            names = list(self.names if wanted == ["all"] else wanted)
        else:
            names = list(self.default if for_table else self.raw)
        return [self.column(n) for n in names]


NODE_COLUMN = Column(NODE_KEY, header="NODE", shrink=True, right=False)


def plain_listing(names: Sequence[str]) -> Listing:
    """A listing of columns known only by name (`sql`, `scan`): any may be cut to fit, and
    values print as stored, with no units."""
    declared = [
        Column(n, show=lambda v, _row: human.plain(v), shrink=True, right=False) for n in names
    ]
    return Listing(raw=list(names), default=list(names), declared=declared)


# --- width ------------------------------------------------------------------------------------


def output_width() -> int | None:
    """The width a table may take: $COLUMNS, else the terminal's; None (no limit) when stdout
    is not a terminal."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    stream = sys.stdout
    try:
        if stream.isatty():
            return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        pass
    return None


def use_colour() -> bool:
    """Colour only on a terminal, never with NO_COLOR set (https://no-color.org) or TERM=dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def cell_width(text: str) -> int:
    """Terminal columns `text` takes: wide East Asian characters count two, combining marks
    none (the text is already escaped, so it holds no controls)."""
    if text.isascii():
        return len(text)
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def cut(text: str, width: int) -> str:
    """`text` in at most `width` columns, its end replaced by an ellipsis when it is longer."""
    if cell_width(text) <= width:
        return text
    kept, used = [], 0
    for char in text:
        w = cell_width(char)
        if used + w > width - 1:
            break
        kept.append(char)
        used += w
    return "".join(kept) + ELLIPSIS


def fitted_widths(
    natural: Sequence[int], minimum: Sequence[int], shrink: Sequence[bool], total: int | None
) -> list[int]:
    """Column widths within `total` (gaps included): the widest cuttable columns give way
    first, none below its minimum. A table that cannot fit even so keeps those minimums."""
    widths = list(natural)
    if total is None:
        return widths
    gaps = len(GAP) * (len(widths) - 1)
    fixed = sum(w for w, s in zip(widths, shrink, strict=True) if not s)
    room = total - gaps - fixed
    cuttable = [i for i, s in enumerate(shrink) if s]
    if sum(widths[i] for i in cuttable) <= room:
        return widths

    def used(cap: int) -> int:
        return sum(max(minimum[i], min(natural[i], cap)) for i in cuttable)

    low, high = 0, max(natural[i] for i in cuttable)
    while low < high:  # the largest cap under which the cuttable columns fit the room
        middle = (low + high + 1) // 2
        if used(middle) <= room:
            low = middle
        else:
            high = middle - 1
    for i in cuttable:
        widths[i] = max(minimum[i], min(natural[i], low))
    spare = room - sum(widths[i] for i in cuttable)
    for i in cuttable:  # the columns cut at the cap share what the cap left over
        if spare <= 0:
            break
        if widths[i] < natural[i]:
            widths[i] += 1
            spare -= 1
    return widths


# --- rendering --------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def render(
    columns: Sequence[Column],
    rows: Sequence[dict],
    *,
    width: int | None = None,
    colour: bool = False,
) -> str:
    """An aligned table with a header line: numbers right-aligned, cuttable columns cut to fit
    `width` (None: no limit), cells coloured when `colour`."""
    titles = [c.title for c in columns]
    raws = [[c.raw(r) for c in columns] for r in rows]
    texts = [[c.text(r) for c in columns] for r in rows]
    natural = [
        max([cell_width(t)] + [cell_width(row[i]) for row in texts]) for i, t in enumerate(titles)
    ]
    minimum = [min(natural[i], max(MIN_CUT_WIDTH, len(t))) for i, t in enumerate(titles)]
    widths = fitted_widths(natural, minimum, [c.shrink for c in columns], width)
    numeric = [
        c.right
        if c.right is not None
        else any(_is_number(row[i]) for row in raws)
        and all(row[i] is None or _is_number(row[i]) for row in raws)
        for i, c in enumerate(columns)
    ]

    def line(cells: Sequence[str], styles: Sequence[str | None]) -> str:
        out = []
        for i, text in enumerate(cells):
            text = cut(text, widths[i])
            pad = " " * (widths[i] - cell_width(text))
            if styles[i] and colour:
                text = click.style(text, fg=styles[i])
            out.append(pad + text if numeric[i] else text + pad)  # headers too, like ps
        return GAP.join(out).rstrip()

    lines = [line(titles, [None] * len(columns))]
    for r, row in enumerate(rows):
        styles = [c.colour(raws[r][i], row) if c.colour else None for i, c in enumerate(columns)]
        lines.append(line(texts[r], styles))
    return "\n".join(lines)


# --- the -o/--columns option ------------------------------------------------------------------


def columns_option(listing: Listing):
    """`-o/--columns a,b,c`: the columns to print (every format), checked against `listing`;
    `-o all` prints every column. The help lists the defaults and the other names."""
    others = [n for n in listing.names if n not in listing.default]

    def parse(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[str]:
        names = [n.strip() for text in value for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in listing.names and n != "all"]
        if unknown:
            raise click.BadParameter(
                f"no column named {unknown[0]!r}; the columns are: {', '.join(listing.names)}",
                ctx=ctx,
                param=param,
            )
        return ["all"] if "all" in names else names

    return click.option(
        "-o",
        "--columns",
        "columns",
        multiple=True,
        metavar="COL,...",
        callback=parse,
        help=f"Columns to print, in this order, or 'all' (default: {','.join(listing.default)}; "
        f"JSON and CSV: every column). Others: {', '.join(others)}.",
    )


def emit_listing(
    rows: Sequence[dict],
    listing: Listing,
    *,
    columns: Sequence[str] | None = None,
    as_json: bool = False,
    as_csv: bool = False,
    empty: str = "nothing to show",
) -> None:
    """Print `rows` as a table fitted to the terminal, or every (or the chosen) column as
    JSON or CSV with raw values."""
    from ffrtmp.cli.formats import write_csv, write_json

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    chosen = listing.choose(columns, for_table=not (as_json or as_csv))
    if rows and NODE_KEY in rows[0] and NODE_KEY not in listing.names:
        # Rows of the fleet's central database, all nodes at once (ffrtmp.fleet.reads): whose
        # row each is comes first, whichever columns were chosen.
        chosen = [NODE_COLUMN, *chosen]
    if as_json or as_csv:
        records = [{c.name: c.raw(r) for c in chosen} for r in rows]
        names = [c.name for c in chosen]
        (write_json if as_json else write_csv)(records, names)
    elif not rows:
        click.echo(empty)
    else:
        colour = use_colour()
        click.echo(render(chosen, rows, width=output_width(), colour=colour), color=colour)
