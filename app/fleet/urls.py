"""Which databases are the fleet's central one: a PostgreSQL URL. Nothing but the standard
library, so a command can ask before it pays for the fleet's imports."""

from __future__ import annotations


def is_central(db: str | None) -> bool:
    """Whether `db` (a --db value: a path, a SQLAlchemy URL, or None) names a PostgreSQL
    database, which ffrtmp only ever uses as the fleet's central one."""
    if not db or "://" not in str(db):
        return False
    return str(db).split("://", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")
