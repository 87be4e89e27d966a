"""`ffrtmp db prune`: remove finished history older than the retention."""

from __future__ import annotations

import sys

import click

from ffrtmp import defaults
from ffrtmp.cli.connect import existing_store
from ffrtmp.cli.options import db_option
from ffrtmp.cli.params import DURATION


@click.command()
@db_option
@click.option(
    "--older-than",
    "older_than_s",
    type=DURATION,
    default=f"{defaults.RETENTION_SECONDS / 86400:g}d",
    show_default=True,
    metavar="DURATION",
    help="Remove finished history older than this (30d, 12h, ...).",
)
@click.option("--dry-run", is_flag=True, help="Count what would go; change nothing.")
@click.option("--include-dead", is_flag=True, help="Remove dead letters and their processes too.")
def prune(db: str | None, older_than_s: float, dry_run: bool, include_dead: bool) -> None:
    """Remove finished processes (with their events), resolved retry items, errors, scans
    and health snapshots older than the retention, in small transactions the daemon can
    write between. Pending retries are never removed.

    Example: ffrtmp db prune --older-than 7d --dry-run
    """
    from datetime import UTC, datetime

    from ffrtmp import prune as pruning
    from ffrtmp.durations import format_duration

    now = datetime.now(UTC)
    with existing_store(db) as store:
        if dry_run or not sys.stdout.isatty():
            counts = pruning.prune(
                store, older_than_s, now, include_dead=include_dead, dry_run=dry_run
            )
        else:
            expected = pruning.prune(
                store, older_than_s, now, include_dead=include_dead, dry_run=True
            )
            with click.progressbar(length=sum(expected.values()), label="pruning") as bar:
                counts = pruning.prune(
                    store,
                    older_than_s,
                    now,
                    include_dead=include_dead,
                    on_batch=lambda _table, rows: bar.update(rows),
                )
    older_than = format_duration(older_than_s)
    verb = "would remove" if dry_run else "removed"
    total = sum(counts.values())
    if total == 0:
        click.echo(f"nothing older than {older_than} to remove")
        return
    parts = ", ".join(f"{n} {table}" for table, n in counts.items() if n)
    click.echo(f"{verb} {total} rows older than {older_than}: {parts}")
