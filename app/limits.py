"""The resource limits a governed process gets, validated once here."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ffrtmp import defaults
from ffrtmp.settings import (
    PERCENT_OF_CORE,
    Flag,
    setting,
    unlimited,
    validate,
    whole_number,
)

MIN_CPU_WEIGHT = 1
MAX_CPU_WEIGHT = 10000
MIN_MEMORY_LIMIT_MB = 1
CPU_PERIOD_US = 100_000
MIB = 1024 * 1024  # the memory limit is given in MiB, cgroups take bytes
# memory.max / memory.limit_in_bytes hold a signed 64-bit count of bytes.
MAX_MEMORY_LIMIT_MB = (2**63 - 1) // MIB


def cpu_shares_for_weight(weight: int) -> int:
    """cgroup v1 cpu.shares for a cgroup v2 weight, mapped as systemd maps CPUWeight to
    CPUShares so that the default weight 100 is the default 1024 shares."""
    return max(2, min(262144, round(weight * 1024 / 100)))


@dataclass(frozen=True, slots=True)
class Limits:
    """cpu_quota: percent of one core (150 = one and a half cores), None for no quota.
    cpu_weight: relative share, 1..10000 (cgroup v2 scale; v1 shares are derived).
    memory_limit_mb: hard memory limit in MiB, None for no limit.
    A person writes "no limit" as `unlimited`, null or 0 (the original daemon's 0)."""

    cpu_quota: float | None = setting(
        "cpu_quota",
        unlimited(PERCENT_OF_CORE),
        default=defaults.CPU_QUOTA_PERCENT,
        flag=Flag(
            "--cpu-quota",
            "CPU quota in percent of one core (150 = one and a half cores); 0 or unlimited "
            "for no quota.",
        ),
    )
    cpu_weight: int = setting(
        "cpu_weight",
        whole_number(MIN_CPU_WEIGHT, MAX_CPU_WEIGHT),
        default=defaults.CPU_WEIGHT,
        flag=Flag("--cpu-weight", f"CPU weight (default {defaults.CPU_WEIGHT})."),
    )
    memory_limit_mb: int | None = setting(
        "memory_limit",
        unlimited(whole_number(MIN_MEMORY_LIMIT_MB, unit=" MB", ceiling=MAX_MEMORY_LIMIT_MB)),
        default=defaults.MEMORY_LIMIT_MB,
        flag=Flag("--memory-limit", "Memory limit in MB; 0 or unlimited for no limit."),
    )

    def __post_init__(self) -> None:
        validate(self)

    @property
    def cpu_quota_us(self) -> int | None:
        """Microseconds of CPU per CPU_PERIOD_US: percent × 1000 (100% = one full core)."""
        return None if self.cpu_quota is None else round(self.cpu_quota * 1000)

    @property
    def memory_limit_bytes(self) -> int | None:
        return None if self.memory_limit_mb is None else self.memory_limit_mb * MIB

    @property
    def cpu_shares_v1(self) -> int:
        """cgroup v1 cpu.shares for this weight (`cpu_shares_for_weight`)."""
        return cpu_shares_for_weight(self.cpu_weight)

    @classmethod
    def from_cgroup_units(
        cls, cpu_quota_us: int | None, cpu_weight: int, memory_limit_bytes: int | None
    ) -> Limits:
        """The limits as a cgroup holds them (None: no limit); the inverse of cpu_quota_us and
        memory_limit_bytes."""
        return cls(
            cpu_quota=None if cpu_quota_us is None else cpu_quota_us / 1000,
            cpu_weight=cpu_weight,
            memory_limit_mb=None if memory_limit_bytes is None else memory_limit_bytes // MIB,
        )

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """For a log line: `cpu 50%, weight 100, memory 256 MiB`."""
        cpu = "unlimited" if self.cpu_quota is None else f"{self.cpu_quota:g}%"
        memory = "unlimited" if self.memory_limit_mb is None else f"{self.memory_limit_mb} MiB"
        return f"cpu {cpu}, weight {self.cpu_weight}, memory {memory}"
