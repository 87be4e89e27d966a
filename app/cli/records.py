"""One record with its related rows (`show` commands), for people or as one JSON object."""

from __future__ import annotations

import json

import click

from ffrtmp.cli.output import _plain, render_table


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return _plain(value)


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
            fields = [{"field": k, "value": v} for k, v in content.items()]
            blocks.append(f"{title}\n{render_table(['field', 'value'], fields)}")
        elif not content:
            blocks.append(f"{title}: none")
        else:
            columns = list(content[0])
            blocks.append(f"{title} ({len(content)})\n{render_table(columns, content)}")
    click.echo("\n\n".join(blocks))
