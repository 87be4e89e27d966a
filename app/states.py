"""The states and kinds stored as lowercase text, so SQL reads naturally: WHERE state = 'dead'."""

from enum import StrEnum


class ProcessState(StrEnum):
    DISCOVERED = "discovered"  # matched, not yet governed
    ATTACHED = "attached"  # in its cgroup with every requested limit verified
    OBSERVED = "observed"  # followed to its exit, but no limit could be applied
    RETRYING = "retrying"  # attach failed with a retryable error; a retry item is pending
    DEAD = "dead"  # attach gave up after max attempts (dead-lettered)
    SKIPPED = "skipped"  # matched a target command but a filter excluded it
    DETACHED = "detached"  # the daemon stopped while the process ran; adopted again at start
    VANISHED = "vanished"  # exited before it could be attached
    EXITED = "exited"  # followed to its end
    RELEASED = "released"  # `ffrtmp release` moved it back out of its job cgroup: not followed


class RetryState(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"


class ErrorType(StrEnum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    RATE_LIMIT = "rate_limit"
    RESOURCE = "resource"
    UNKNOWN = "unknown"


RETRYABLE_ERROR_TYPES = frozenset({ErrorType.TRANSIENT, ErrorType.RATE_LIMIT, ErrorType.RESOURCE})


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class EventKind(StrEnum):
    DISCOVERED = "discovered"
    FILTERED_OUT = "filtered_out"
    LIMITS_APPLIED = "limits_applied"
    ATTACH_FAILED = "attach_failed"
    OBSERVED_WITHOUT_LIMITS = "observed_without_limits"
    RETRY_SCHEDULED = "retry_scheduled"
    RETRY_CANCELLED = "retry_cancelled"
    REQUEUED = "requeued"
    DEAD_LETTERED = "dead_lettered"
    DEAD_LETTER_CLOSED = "dead_letter_closed"  # its process ended: history, not actionable
    OOM_KILLED = "oom_killed"
    EXITED = "exited"
    VANISHED = "vanished"
    DETACHED = "detached"
    ADOPTED = "adopted"
    CGROUP_REMOVED = "cgroup_removed"
    RECONSIDERED = "reconsidered"  # skipped by a filter; a reloaded configuration governs it
    RELEASED = "released"  # `ffrtmp release`: moved back where it came from, no longer governed
