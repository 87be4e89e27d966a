"""Alembic driven in-process: the daemon and the tests upgrade with the same code."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine

from ffrtmp.revisions import MIGRATIONS


def alembic_config(engine: Engine | None = None) -> Config:
    """The configuration alembic.ini gives the `alembic` command line, built here so that an
    installed ffrtmp, which has no alembic.ini, upgrades exactly as a source checkout does."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = alembic_config(engine)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def differences_from_schema(conn: Connection) -> list:
    """Differences between the migrated database and ffrtmp.schema (empty when they agree)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from ffrtmp.schema import metadata

    context = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": True})
    return compare_metadata(context, metadata)
