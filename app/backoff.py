"""How long to wait before each retry: exponential, capped, with bounded jitter.

For retry number n = 1, 2, 3, … (n = 1 is the first retry, after the first failed attempt):

    base_delay(n) = min(max_delay, initial × multiplier^(n − 1))
    delay(n)      = min(max_delay, base_delay(n) × u),  u ~ Uniform[1 − jitter, 1 + jitter]

With the defaults (initial 1 s, multiplier 2, max_delay 300 s, jitter 0.1) the base delays are
1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, … seconds, and each actual delay is within ±10% of
its base delay but never above 300 s.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ffrtmp import defaults
from ffrtmp.durations import format_duration
from ffrtmp.settings import Flag, InvalidSetting, duration, number, setting, validate, whole_number


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """initial_delay: seconds before the first retry; multiplier: growth per retry (≥ 1);
    max_delay: cap in seconds; jitter: relative spread in [0, 1); max_attempts: how many
    retries the queue makes after the first failed attach before it dead-letters an item
    (the original daemon's meaning: 3 means 1 + 3 attempts in all)."""

    initial_delay: float = setting(
        "initial_delay", duration(), default=defaults.RETRY_INITIAL_DELAY_SECONDS
    )
    multiplier: float = setting("multiplier", number(minimum=1), default=defaults.RETRY_MULTIPLIER)
    max_delay: float = setting("max_delay", duration(), default=defaults.RETRY_MAX_DELAY_SECONDS)
    jitter: float = setting("jitter", number(minimum=0, below=1), default=defaults.RETRY_JITTER)
    max_attempts: int = setting(
        "max_attempts",
        whole_number(1),
        default=defaults.RETRY_MAX_ATTEMPTS,
        flag=Flag(
            "--max-retry-attempts",
            f"Retries after the first failed attach before a process is dead-lettered "
            f"(default {defaults.RETRY_MAX_ATTEMPTS}).",
            original_envvar="MAX_RETRY_ATTEMPTS",
        ),
    )

    def __post_init__(self) -> None:
        validate(self)
        if self.max_delay < self.initial_delay:
            raise InvalidSetting(
                "max_delay",
                f"must not be shorter than initial_delay ({format_duration(self.initial_delay)}), "
                f"not {format_duration(self.max_delay)}",
            )

    def base_delay(self, attempt: int) -> float:
        """Seconds before retry number `attempt` (1-based), without jitter."""
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise ValueError(f"attempt must be an integer of at least 1, not {attempt!r}")
        exponent = attempt - 1
        # Past this exponent the cap applies for certain (the estimate is from logarithms, so
        # one step of margin); checking first keeps multiplier ** exponent from overflowing,
        # or a huge int from failing to convert, for absurd attempt numbers.
        if self.multiplier > 1 and exponent > self._exponent_reaching_cap():
            return self.max_delay
        try:
            return min(self.max_delay, self.initial_delay * self.multiplier**exponent)
        except OverflowError:
            # Only reachable with a tiny initial and a cap near the float limit.
            return self.max_delay

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds before retry number `attempt`, jittered; pass `rng` for repeatable draws."""
        base = self.base_delay(attempt)
        if self.jitter == 0:
            return base
        low, high = 1 - self.jitter, 1 + self.jitter
        draw = (rng or random).uniform(low, high)
        # uniform() may round a hair past its bounds; the documented range is a promise.
        factor = min(high, max(low, draw))
        return min(self.max_delay, base * factor)

    def _exponent_reaching_cap(self) -> float:
        # A difference of logs, not the log of a ratio that could overflow to inf.
        gap = math.log(self.max_delay) - math.log(self.initial_delay)
        return math.ceil(gap / math.log(self.multiplier))
