"""Parameters and helpers shared by the operator's commands."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta

import click

from ffrtmp.durations import parse_duration
from ffrtmp.settings import MAX_DURATION_SECONDS


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """The moment `text` names: a duration back from now (90s, 15m, 2h, 7d, 1h30m), `today`
    or `yesterday` (local midnight), or an ISO time (local time unless it carries an offset
    or Z). Raises ValueError with the reason."""
    raw = text.strip()
    days_back = {"today": 0, "yesterday": 1}.get(raw.lower())
    if days_back is not None:
        local_now = (now or datetime.now(UTC)).astimezone()
        midnight = datetime.combine(local_now.date() - timedelta(days=days_back), time())
        return midnight.astimezone().astimezone(UTC)  # the local midnight, DST included
    try:
        seconds = parse_duration(raw)
    except ValueError:
        pass
    else:
        if seconds > MAX_DURATION_SECONDS:
            raise ValueError(f"{text!r} is further back than a century")
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (90s, 15m, 2h, 7d), today, yesterday nor an ISO "
            "time (2026-01-31T12:00 or 2026-01-31T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # an operator's naive time is their local time
    return moment.astimezone(UTC)


class Since(click.ParamType):
    """--since: how far back to look, as a duration or an ISO time; converts to aware UTC."""

    name = "since"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "DURATION|today|yesterday|TIME"

    def convert(self, value, param, ctx):
        if isinstance(value, datetime):
            return value
        try:
            return parse_since(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Duration(click.ParamType):
    """A duration written like 500ms, 90s, 15m, 2h, 7d or 1h30m; converts to seconds."""

    name = "duration"

    def convert(self, value, param, ctx):
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if seconds > MAX_DURATION_SECONDS:  # date arithmetic with it would overflow
            self.fail(f"{value!r} is longer than a century", param, ctx)
        return seconds


class SignalName(click.ParamType):
    """A signal by name or number: KILL, SIGKILL, sigterm, 9; converts to its number."""

    name = "signal"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "NAME"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        from ffrtmp.cli.human import signal_number

        try:
            return signal_number(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SINCE = Since()
SIGNAL = SignalName()
DURATION = Duration()

since_option = click.option(
    "--since",
    type=SINCE,
    default=None,
    help="Only rows from this far back: 90s, 15m, 2h, 7d, today, yesterday, or an ISO time.",
)


def repeatable_choice_option(flag: str, dest: str, choices: Iterable[str], help: str):
    """A filter given any number of times (`--state dead --state retrying`), each value one of
    `choices`."""
    values = [str(choice) for choice in choices]
    return click.option(flag, dest, type=click.Choice(values), multiple=True, help=help)


def limit_option(default: int):
    return click.option(
        "--limit",
        type=click.IntRange(min=1),
        default=default,
        show_default=True,
        help="Print at most this many rows, newest first.",
    )
