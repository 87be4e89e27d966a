"""How the database stores time: naive UTC text, read back as aware UTC datetimes.

Kept apart from ffrtmp.models so the read commands can use it without loading the ORM.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, TypeDecorator


def utc(epoch_seconds: float) -> datetime:
    """An epoch time (the daemon loop's `now`) as the aware UTC datetime the store takes."""
    return datetime.fromtimestamp(epoch_seconds, UTC)


class UTCDateTime(TypeDecorator):
    """Stored as naive UTC text ('2026-11-27 20:00:00.000000', comparable with SQLite's
    datetime('now')); read back as an aware UTC datetime. A naive datetime is refused."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use datetime.now(UTC)")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)
