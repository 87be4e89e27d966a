"""Values written for people: sizes in MiB, durations as 1m30s, signals by name, how a process
ended in a word. JSON and CSV print the raw values; only tables and `show` use these."""

from __future__ import annotations

import json
import shlex
import signal
from datetime import UTC, datetime
from typing import Any

from ffrtmp.printable import printable

_IEC_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def size(n: int | float | None) -> str:
    """23539712 -> '22.4 MiB'; below 1 KiB in bytes."""
    if n is None:
        return "-"
    if abs(n) < 1024:
        return f"{int(n)} B"
    value = float(n)
    for unit in _IEC_UNITS:
        value /= 1024
        if abs(value) < 1024 or unit == _IEC_UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def duration(seconds: float | None) -> str:
    """0.0615 -> '62ms', 4.25 -> '4.2s', 90 -> '1m30s', 9000 -> '2h30m': at most two units."""
    if seconds is None:
        return "-"
    if seconds < 0:
        return f"-{duration(-seconds)}"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f}ms".replace(".0ms", "ms")
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 10:
        return f"{seconds:.1f}s".replace(".0s", "s")
    whole = round(seconds)
    parts = []
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= span or (unit == "s" and not parts):
            parts.append(f"{whole // span}{unit}")
            whole %= span
        elif parts:
            parts.append("")  # a skipped unit still counts: 1h0m5s shows as 1h
        if len(parts) == 2:
            break
    return "".join(parts)


def signal_name(number: int | None) -> str:
    """9 -> 'SIGKILL'; real-time signals as 'SIGRTMIN+3'; unknown numbers as 'signal 77'."""
    if number is None:
        return "-"
    try:
        return signal.Signals(number).name
    except ValueError:
        pass
    if signal.SIGRTMIN < number <= signal.SIGRTMAX:
        return f"SIGRTMIN+{number - signal.SIGRTMIN}"
    return f"signal {number}"


def signal_number(text: str) -> int:
    """'KILL', 'sigkill', 'SIGKILL' or '9' -> 9. Raises ValueError naming the text."""
    raw = text.strip()
    if raw.isdigit():
        return int(raw)
    name = raw.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ValueError(
            f"{text!r} is not a signal name or number (e.g. KILL, SIGTERM, 9)"
        ) from None


def outcome(row: dict) -> str | None:
    """How a process ended, in a word: 'OOM-killed', 'SIGKILL', 'exit 0'; None while it runs
    (or was never followed), 'unknown' when it ended without a known code."""
    if row.get("oom_killed"):
        return "OOM-killed"
    if row.get("exit_signal") is not None:
        return signal_name(row["exit_signal"])
    if row.get("exit_code") is not None:
        return f"exit {row['exit_code']}"
    if row.get("exited_at") is not None:
        return "unknown"
    return None


def compact_time(value: datetime | None, now: datetime | None = None) -> str:
    """Local time in at most 12 characters, like ls -l: '14:03:07' today, 'Nov 27 14:03' this
    year, '2025-11-27' before."""
    if value is None:
        return "-"
    local = value.astimezone()
    today = (now or datetime.now(UTC)).astimezone()
    if local.date() == today.date():
        return local.strftime("%H:%M:%S")
    if local.year == today.year:
        return local.strftime("%b %d %H:%M")
    return local.strftime("%Y-%m-%d")


def relative(value: datetime | None, now: datetime | None = None) -> str:
    """'3m ago' / 'in 20s' for people."""
    if value is None:
        return "-"
    delta = ((now or datetime.now(UTC)) - value).total_seconds()
    if abs(delta) < 1:
        return "now"
    text = duration(abs(delta))
    return f"{text} ago" if delta > 0 else f"in {text}"


def local_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def plain(value: Any) -> str:
    """Any stored value as one line of text, escaped for a terminal: no units, no rounding
    beyond what a float needs (the `sql` command's cells)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return f"{local_time(value)} ({relative(value)})"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    if isinstance(value, list | tuple | dict):
        return printable(json.dumps(value, ensure_ascii=False))
    if isinstance(value, bytes):
        return printable(value.decode("utf-8", "backslashreplace"))
    return printable(str(value))


def by_name(name: str, value: Any, *, long: bool = False) -> str:
    """A stored value for people, with the unit its column name carries: `*_bytes` as a size,
    `*_seconds` and `*_ms` as a duration, `*_mb` in MiB, `*_at` as a local time, `exit_signal`
    by name, `argv` as a shell-quoted command line. `long` (for `show`) keeps the raw number
    beside the unit and the full date beside a time."""
    if value is None:
        return "-"
    if name == "argv" and isinstance(value, list):  # as a shell would take it back
        return printable(shlex.join(str(arg) for arg in value))
    if isinstance(value, int | float) and not isinstance(value, bool):
        if name.endswith("_bytes"):
            return f"{size(value)} ({value} B)" if long else size(value)
        if name.endswith("_seconds"):
            return f"{duration(value)} ({plain(value)} s)" if long else duration(value)
        if name.endswith("_ms"):
            return duration(value / 1000)
        if name.endswith("_mb"):  # the limits, stored in MiB as the config gives them
            return f"{plain(value)} MiB"
        if name == "exit_signal":
            return f"{value} ({signal_name(value)})" if long else signal_name(value)
    if isinstance(value, datetime) and not long:
        return compact_time(value)
    return plain(value)
