"""The ORM classes the daemon writes through, mapped onto the tables of ffrtmp.schema.

The columns are defined once, in ffrtmp.schema; a class here names a table for the Session and
adds what a row means to the daemon (a process row's identity). Read commands never load this
module or the ORM: they query app/read_tables.py, generated from ffrtmp.schema. The shipping
tables (schema.LOCAL_ONLY_TABLES) have no class: ffrtmp.fleet reads and writes them in Core.
"""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from ffrtmp import schema
from ffrtmp.identity import ProcessIdentity


class Base(DeclarativeBase):
    metadata = schema.metadata


class DaemonRun(Base):
    __table__ = schema.daemon_runs


class Process(Base):
    __table__ = schema.processes

    @property
    def identity(self) -> ProcessIdentity:
        return ProcessIdentity(self.boot_id, self.pid, self.start_ticks)


class ProcessEvent(Base):
    __table__ = schema.process_events


class RetryItem(Base):
    __table__ = schema.retry_items


class ErrorEvent(Base):
    __table__ = schema.error_events


class Scan(Base):
    __table__ = schema.scans


class HealthSnapshot(Base):
    __table__ = schema.health_snapshots
