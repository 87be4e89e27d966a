"""The database schema: a public interface, documented in docs/schema.md.

Change it only through a migration in migrations/versions/. All times are UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.utctime import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[str]: JSON}


class DaemonRun(Base):
    """One row per start of `ffrtmp watch`."""

    __tablename__ = "daemon_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime]
    stopped_at: Mapped[datetime | None]
    stop_reason: Mapped[str | None] = mapped_column(String(64))
    pid: Mapped[int]
    hostname: Mapped[str] = mapped_column(String(255))
    version: Mapped[str] = mapped_column(String(32))
    discovery: Mapped[str] = mapped_column(String(16))
    cgroup_version: Mapped[int | None]
    cgroup_parent: Mapped[str | None] = mapped_column(Text)
    config: Mapped[dict[str, Any]]


class Process(Base):
    """One row per process instance: (boot_id, pid, start_ticks) is unique."""

    __tablename__ = "processes"
    __table_args__ = (
        UniqueConstraint("boot_id", "pid", "start_ticks"),
        Index("ix_processes_state_discovered_at", "state", "discovered_at"),
        Index("ix_processes_pid", "pid"),
        Index("ix_processes_exited_at", "exited_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    boot_id: Mapped[str] = mapped_column(String(36))
    pid: Mapped[int]
    start_ticks: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    command: Mapped[str] = mapped_column(String(255))
    argv: Mapped[list[str]]
    exe: Mapped[str | None] = mapped_column(Text)
    ppid: Mapped[int | None]
    uid: Mapped[int | None]
    user: Mapped[str | None] = mapped_column(String(255))
    cwd: Mapped[str | None] = mapped_column(Text)
    rule: Mapped[str | None] = mapped_column(String(255))
    job_id: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    state_reason: Mapped[str | None] = mapped_column(Text)
    requested_cpu_quota: Mapped[float | None] = mapped_column(Float)
    requested_cpu_weight: Mapped[int | None]
    requested_memory_limit_mb: Mapped[int | None]
    applied_cpu_quota: Mapped[float | None] = mapped_column(Float)
    applied_cpu_weight: Mapped[int | None]
    applied_memory_limit_mb: Mapped[int | None]
    cgroup_version: Mapped[int | None]
    cgroup_paths: Mapped[list[str] | None] = mapped_column(JSON)
    discovered_at: Mapped[datetime]
    attached_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime]
    exited_at: Mapped[datetime | None]
    exit_code: Mapped[int | None]
    exit_signal: Mapped[int | None]
    exit_reason: Mapped[str | None] = mapped_column(Text)
    oom_killed: Mapped[bool | None] = mapped_column(Boolean)
    peak_memory_bytes: Mapped[int | None]
    cpu_seconds: Mapped[float | None] = mapped_column(Float)
    run_seconds: Mapped[float | None] = mapped_column(Float)


class ProcessEvent(Base):
    """Append-only audit trail of what happened to a process."""

    __tablename__ = "process_events"
    __table_args__ = (
        Index("ix_process_events_process_id_occurred_at", "process_id", "occurred_at"),
        Index("ix_process_events_occurred_at", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    process_id: Mapped[int] = mapped_column(ForeignKey("processes.id", ondelete="CASCADE"))
    occurred_at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class RetryItem(Base):
    """At most one per process: the retry queue (state 'pending') and the dead-letter list
    (state 'dead')."""

    __tablename__ = "retry_items"
    __table_args__ = (
        UniqueConstraint("process_id"),
        Index("ix_retry_items_state_next_attempt_at", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    process_id: Mapped[int] = mapped_column(ForeignKey("processes.id", ondelete="CASCADE"))
    operation: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int]
    max_attempts: Mapped[int]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_type: Mapped[str | None] = mapped_column(String(16))
    claimed_until: Mapped[datetime | None]
    final_reason: Mapped[str | None] = mapped_column(Text)


class ErrorEvent(Base):
    """Every error the daemon met, classified."""

    __tablename__ = "error_events"
    __table_args__ = (
        Index("ix_error_events_occurred_at", "occurred_at"),
        Index("ix_error_events_error_type_occurred_at", "error_type", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime]
    operation: Mapped[str] = mapped_column(String(32))
    process_id: Mapped[int | None] = mapped_column(
        ForeignKey("processes.id", ondelete="SET NULL"), index=True
    )
    pid: Mapped[int | None]
    error_type: Mapped[str] = mapped_column(String(16))
    retryable: Mapped[bool] = mapped_column(Boolean)
    errno: Mapped[int | None]
    errno_name: Mapped[str | None] = mapped_column(String(32))
    exception: Mapped[str | None] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text)


class Scan(Base):
    """One full pass over the process table (or one event-triggered look at one process)."""

    __tablename__ = "scans"
    __table_args__ = (Index("ix_scans_started_at", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime]
    duration_ms: Mapped[float] = mapped_column(Float)
    trigger: Mapped[str] = mapped_column(String(16))
    ok: Mapped[bool] = mapped_column(Boolean)
    seen: Mapped[int]
    matched: Mapped[int]
    new: Mapped[int]
    unreadable: Mapped[int]
    errors: Mapped[int]


class HealthSnapshot(Base):
    """The health verdict and the counters behind it, on every change and at least every
    minute."""

    __tablename__ = "health_snapshots"
    __table_args__ = (Index("ix_health_snapshots_taken_at", "taken_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    taken_at: Mapped[datetime]
    daemon_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("daemon_runs.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[str]]
    last_scan_at: Mapped[datetime | None]
    last_successful_scan_at: Mapped[datetime | None]
    consecutive_scan_failures: Mapped[int]
    consecutive_attach_failures: Mapped[int]
    total_scan_failures: Mapped[int]
    total_attach_failures: Mapped[int]
    retry_pending: Mapped[int]
    dead_letters: Mapped[int]
    errors_by_type: Mapped[dict[str, Any]]
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
