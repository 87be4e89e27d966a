"""`ffrtmp top`: the running jobs with what their cgroups use now, like systemd-cgtop.

The database says which processes run and under which limits; their cgroup files say what
they use. Both are only read. CPU % is the CPU time a job's cgroup used between two looks
divided by the wall time between them, in percent of one core (the unit of `cpu_quota`), so
the first look has none: `Top.look()` keeps the last counters to compare the next with.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from ffrtmp.cgroups.live import LiveUsage, read_live_usage
from ffrtmp.identity import ProcessIdentity, boot_id

MIB = 1024 * 1024
GOVERNED_STATES = ("attached", "detached")  # in job cgroups of ours (detached: daemon away)
SORT_KEYS = ("cpu", "memory", "throttled", "age", "pid", "job")


@dataclass(frozen=True, slots=True)
class JobNow:
    """One running job as `top` shows it; raw units (seconds, bytes, percent of one core)."""

    process_id: int
    job_id: str
    pid: int
    command: str
    rule: str | None
    state: str
    started_at: datetime
    age_seconds: float
    cpu_percent: float | None  # since the previous look; None on the first
    cpu_quota_percent: float | None  # None: no quota
    cpu_seconds: float | None
    memory_bytes: int | None
    memory_limit_bytes: int | None  # None: no limit
    peak_memory_bytes: int | None
    cpu_throttled_seconds: float | None
    cpu_throttled_periods: int | None
    cpu_periods: int | None

    def as_json(self) -> dict:
        data = asdict(self)
        data["started_at"] = self.started_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return data


class Top:
    """Looks at the running jobs; `read_rows` returns the database's unfinished rows."""

    def __init__(
        self,
        read_rows: Callable[[], list[dict]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read_rows = read_rows
        self.clock = clock
        self._boot_id = boot_id()
        self._previous: dict[int, tuple[float, float]] = {}  # row id -> (clock, cpu seconds)

    def look(self) -> list[JobNow]:
        now_wall = datetime.now(UTC)
        jobs, seen = [], {}
        for row in self.read_rows():
            if row["boot_id"] != self._boot_id:
                continue
            identity = ProcessIdentity(row["boot_id"], row["pid"], row["start_ticks"])
            if not identity.is_running():
                continue  # ended; the daemon has not recorded it yet (or is not running)
            usage = self._usage_of(row)
            cpu_percent = None
            cpu_seconds = usage.cpu_seconds if usage else None
            if cpu_seconds is not None:
                at = self.clock()
                before = self._previous.get(row["id"])
                if before is not None and at > before[0]:
                    cpu_percent = max(0.0, (cpu_seconds - before[1]) / (at - before[0]) * 100)
                seen[row["id"]] = (at, cpu_seconds)
            limit_mb = row["applied_memory_limit_mb"]
            jobs.append(
                JobNow(
                    process_id=row["id"],
                    job_id=row["job_id"],
                    pid=row["pid"],
                    command=row["command"],
                    rule=row["rule"],
                    state=row["state"],
                    started_at=row["started_at"],
                    age_seconds=max(0.0, (now_wall - row["started_at"]).total_seconds()),
                    cpu_percent=cpu_percent,
                    cpu_quota_percent=row["applied_cpu_quota"] if usage else None,
                    cpu_seconds=cpu_seconds,
                    memory_bytes=usage.memory_current_bytes if usage else None,
                    memory_limit_bytes=limit_mb * MIB if usage and limit_mb else None,
                    peak_memory_bytes=usage.peak_memory_bytes if usage else None,
                    cpu_throttled_seconds=usage.cpu_throttled_seconds if usage else None,
                    cpu_throttled_periods=usage.cpu_throttled_periods if usage else None,
                    cpu_periods=usage.cpu_periods if usage else None,
                )
            )
        self._previous = seen
        return jobs

    @staticmethod
    def _usage_of(row: dict) -> LiveUsage | None:
        paths = row["cgroup_paths"]
        if row["state"] not in GOVERNED_STATES or not paths or row["cgroup_version"] not in (1, 2):
            return None
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            return None
        return read_live_usage(row["cgroup_version"], paths)


def sorted_jobs(jobs: Iterable[JobNow], key: str) -> list[JobNow]:
    """Biggest first for the figures, oldest first for age, ascending for pid and job."""
    if key not in SORT_KEYS:
        raise ValueError(f"sort key must be one of {', '.join(SORT_KEYS)}, not {key!r}")
    jobs = list(jobs)
    if key == "pid":
        return sorted(jobs, key=lambda j: j.pid)
    if key == "job":
        return sorted(jobs, key=lambda j: j.job_id)
    figure = {
        "cpu": lambda j: j.cpu_percent,
        "memory": lambda j: j.memory_bytes,
        "throttled": lambda j: j.cpu_throttled_seconds,
        "age": lambda j: j.age_seconds,
    }[key]
    # Jobs without the figure last, then by pid so equal figures keep a steady order.
    return sorted(jobs, key=lambda j: (figure(j) is None, -(figure(j) or 0), j.pid))


# --- the screen ---------------------------------------------------------------------------

# (header, width) of the fixed columns; JOB takes what is left of the line.
COLUMNS = (
    ("PID", 7),
    ("COMMAND", 10),
    ("STATE", 8),
    ("CPU%/QUOTA", 10),
    ("MEM/LIMIT", 10),
    ("THROTTLED", 9),
    ("AGE", 6),
)
MIN_JOB_WIDTH = 8


def screen_lines(jobs: list[JobNow], width: int, title: str) -> list[str]:
    """The title, the column headers and one line per job, none longer than `width`."""
    fixed = sum(w for _, w in COLUMNS) + len(COLUMNS)
    job_width = max(MIN_JOB_WIDTH, width - fixed)
    header = " ".join(
        h.rjust(w) if i != 1 and i != 2 else h.ljust(w) for i, (h, w) in enumerate(COLUMNS)
    )
    lines = [title[:width], (header + " " + "JOB")[:width]]
    for job in jobs:
        cells = (
            str(job.pid),
            job.command,
            job.state,
            _cpu_cell(job),
            _memory_cell(job),
            "-" if job.cpu_throttled_seconds is None else short_duration(job.cpu_throttled_seconds),
            short_duration(job.age_seconds),
        )
        parts = []
        for i, ((_, w), cell) in enumerate(zip(COLUMNS, cells, strict=True)):
            cell = safe_text(cell)
            cell = cell if len(cell) <= w else cell[: w - 1] + "…"
            parts.append(cell.ljust(w) if i in (1, 2) else cell.rjust(w))
        job_id = safe_text(job.job_id)
        if len(job_id) > job_width:
            job_id = job_id[: job_width - 1] + "…"
        lines.append((" ".join(parts) + " " + job_id)[:width])
    return lines


def _cpu_cell(job: JobNow) -> str:
    used = "-" if job.cpu_percent is None else f"{job.cpu_percent:.1f}"
    if job.cpu_quota_percent is None:
        return used
    return f"{used}/{job.cpu_quota_percent:g}"


def _memory_cell(job: JobNow) -> str:
    used = "-" if job.memory_bytes is None else short_bytes(job.memory_bytes)
    if job.memory_limit_bytes is None:
        return used
    return f"{used}/{short_bytes(job.memory_limit_bytes)}"


def short_bytes(value: int) -> str:
    """At most 5 characters: 512, 3.5K, 120M, 1.5G."""
    size = float(value)
    for unit in ("", "K", "M", "G", "T"):
        if size < 1000 or unit == "T":
            if not unit:
                return str(int(size))
            return f"{size:.1f}{unit}" if size < 10 else f"{size:.0f}{unit}"
        size /= 1024
    raise AssertionError("unreachable")


def short_duration(seconds: float) -> str:
    """The two largest units, at most 6 characters: 45s, 12m30s, 3h04m, 2d03h; 0.25s below 1 s."""
    if seconds < 1:
        return f"{seconds:.2f}s" if seconds else "0s"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def safe_text(text: str) -> str:
    """A process's own bytes never reach the terminal as control characters."""
    return "".join(c if c.isprintable() else "?" for c in text)
