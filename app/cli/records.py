"""One record with its related rows (`show` commands), for people or as one JSON object."""

from __future__ import annotations

import json

import click

from ffrtmp.cli.formats import plain


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return plain(value)


def _long(name: str):
    from ffrtmp.cli.human import by_name

    return lambda value, _row: by_name(name, value, long=True)


def render_section(content: dict | list) -> str:
    """A record as FIELD/VALUE lines, or a list of rows as a table; every value whole (never
    cut), with its unit and escaped for the terminal."""
    from ffrtmp.cli.human import by_name
    from ffrtmp.cli.table import Column, render

    if isinstance(content, dict):
        fields = [{"field": k, "value": v} for k, v in content.items()]
        value = Column(
            "value", show=lambda v, row: by_name(row["field"], v, long=True), shrink=False
        )
        return render([Column("field", show=lambda v, _r: str(v)), value], fields)
    names = list(content[0])
    return render([Column(n, show=_long(n)) for n in names], content)


def print_record(sections: dict[str, dict | list | None], *, as_json: bool = False) -> None:
    """Each section is a record (printed as field/value lines) or a list of rows (a table),
    under its name; JSON prints the sections as one object with the same keys."""
    if as_json:
        click.echo(json.dumps(_jsonable(sections), indent=2))
        return
    blocks = []
    for name, content in sections.items():
        title = name.replace("_", " ")
        if content is None:
            blocks.append(f"{title}: none")
        elif isinstance(content, dict):
            blocks.append(f"{title}\n{render_section(content)}")
        elif not content:
            blocks.append(f"{title}: none")
        else:
            blocks.append(f"{title} ({len(content)})\n{render_section(content)}")
    click.echo("\n\n".join(blocks))
