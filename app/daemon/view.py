"""What the readers of a running daemon see of it: /metrics, /healthz and systemd's status line.

They run on threads of their own (the HTTP server's) or between the loop's steps, and they only
read. A `DaemonView` hands them answers, not the daemon: health evaluated at the daemon's clock,
the followed processes as the loop last published them (an immutable tuple), the writes kept for
the database, the retry queue's depths, usage totals. A test builds one from the parts it has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ffrtmp.clock import Clock, Moment, SystemClock
from ffrtmp.health import HealthReport, HealthThresholds, HealthTracker
from ffrtmp.lifecycle import Followed


def _none() -> None:
    return None


def _zero() -> int:
    return 0


@dataclass(frozen=True)
class DaemonView:
    evaluate: Callable[[Moment], HealthReport]
    thresholds: Callable[[], HealthThresholds]
    clock: Clock = field(default_factory=SystemClock)
    followed: Callable[[], tuple[Followed, ...]] = tuple
    retry_depths: Callable[[], dict[str, int]] | None = None  # None: no store to ask
    pending_writes: Callable[[], int] = _zero  # writes the database refused, kept in memory
    usage_totals: Callable[[], dict] = dict  # ffrtmp.usage.RuleTotals by rule label
    next_scan_at: Callable[[], Moment | None] = _none
    internal_errors: Callable[[], int] = _zero  # programming errors the loop caught
    discovery: str = "unknown"
    unavailable: str | None = None  # why no limits are applied, if none are

    @classmethod
    def of(cls, health: HealthTracker, **given) -> DaemonView:
        """A view whose health is `health`'s."""
        return cls(evaluate=health.evaluate, thresholds=lambda: health.thresholds, **given)

    def report(self) -> HealthReport:
        """Health now, by the daemon's clock."""
        return self.evaluate(self.clock.now())

    def followed_now(self) -> tuple[int, int]:
        """(governed, ungoverned) followed processes."""
        followed = self.followed()
        governed = sum(1 for f in followed if f.governed)
        return governed, len(followed) - governed

    def attached_now(self) -> int:
        """Followed processes that sit in cgroups of ours."""
        return self.followed_now()[0]
