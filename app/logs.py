"""Logging for the entry points: stderr, human lines by default or one JSON object per line.

The library only names its loggers (`ffrtmp.scanner`, ...); only the CLI calls `setup`.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data = getattr(record, "data", None)
        if data is not None:
            entry["data"] = data
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class HumanFormatter(logging.Formatter):
    """One line per record, the message's control characters escaped: a logged argv or cwd
    is a process's own bytes, and `watch` may log to the operator's terminal."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        from ffrtmp.printable import printable

        record.message = printable(record.message)
        return super().formatMessage(record)


def setup(level: str = "info", fmt: str = "human") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(HumanFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic narrates every migration step at INFO; ffrtmp.database logs the upgrade itself.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))


def log_settings(logger: logging.Logger, title: str, settings: dict, fmt: str) -> None:
    """A nested settings dict as one readable line per setting (`title: retry.max_attempts =
    3`), or, under the JSON format, as one record holding the whole object under "data"."""
    if fmt == "json":
        logger.info(title, extra={"data": settings})
        return
    for key, value in _flatten(settings):
        logger.info("%s: %s = %s", title, key, readable(value))


# The settings the one start-up line names; the rest are logged at DEBUG.
SUMMARY_KEYS = ("target_commands", "scan_interval", "discovery", "default_limits", "retention")


def log_configuration(logger: logging.Logger, settings: dict, fmt: str) -> None:
    """The effective configuration at start-up: under the JSON format one record with the
    whole object; otherwise one line with what matters most, and every setting at DEBUG."""
    title = "effective configuration"
    if fmt == "json":
        log_settings(logger, title, settings, fmt)
        return
    named = [f"{key} {_compact(settings[key])}" for key in SUMMARY_KEYS if key in settings]
    rules = len(settings.get("commands") or {})
    if rules:
        named.append(f"{rules} command rule{'s' if rules != 1 else ''}")
    count = sum(1 for _ in _flatten(settings))
    logger.info("%s: %s (all %d settings at --log-level debug)", title, ", ".join(named), count)
    if logger.isEnabledFor(logging.DEBUG):
        for key, value in _flatten(settings):
            logger.debug("%s: %s = %s", title, key, readable(value))


def _compact(value: object) -> str:
    if isinstance(value, dict):
        return "(" + ", ".join(f"{k} {readable(v)}" for k, v in _flatten(value)) + ")"
    return readable(value)


def _flatten(settings: dict, prefix: str = ""):
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{name}.")
        else:
            yield name, value


def readable(value: object) -> str:
    """A setting's value for a log line: lists without Python's quotes, none, yes/no."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(readable(v) for v in value) + "]"
    return str(value)
