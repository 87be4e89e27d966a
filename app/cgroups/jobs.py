"""Job ids, which are also the names of the job cgroups, and the ownership rule they carry.

Ownership rule: ffrtmp only ever creates, writes, lists or removes job cgroups whose names it
generates (`job_id_for`: a prefix of defaults.JOB_ID_PREFIXES, `-`, then only [A-Za-z0-9_.-])
below its parent cgroup. Anything else below the parent is never touched.
"""

from __future__ import annotations

import re

from ffrtmp import defaults
from ffrtmp.identity import ProcessIdentity

JOB_COMMAND_MAX_CHARS = 64  # keeps every job id well below the 255-byte name limit
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
_JOB_PREFIXES_PATTERN = "|".join(map(re.escape, defaults.JOB_ID_PREFIXES))
_JOB_NAME = re.compile(rf"^(?:{_JOB_PREFIXES_PATTERN})-[A-Za-z0-9_.-]{{1,200}}$")


def job_id_for(prefix: str, command: str, identity: ProcessIdentity) -> str:
    """`auto-ffmpeg-1234-987654`: pid and start ticks, so a recycled pid gets a new cgroup."""
    if prefix not in defaults.JOB_ID_PREFIXES:
        raise ValueError(
            f"job id prefix must be one of {', '.join(defaults.JOB_ID_PREFIXES)}, not {prefix!r}"
        )
    safe_command = _UNSAFE_NAME_CHARS.sub("_", command)[:JOB_COMMAND_MAX_CHARS] or "unknown"
    return f"{prefix}-{safe_command}-{identity.pid}-{identity.start_ticks}"


def job_id_named(prefix: str, name: str) -> str | None:
    """An operator's own job name made one ffrtmp may own: kept when it already is one, else
    prefixed and cleaned; None when nothing usable is left."""
    if is_job_name(name):
        return name
    candidate = f"{prefix}-{_UNSAFE_NAME_CHARS.sub('_', name)[:200]}"
    return candidate if is_job_name(candidate) else None


def is_job_name(name: str) -> bool:
    """True for the cgroup names ffrtmp generates, and only those."""
    return bool(_JOB_NAME.match(name))


def require_job_name(job_id: str) -> None:
    if not is_job_name(job_id):
        raise ValueError(
            f"job id {job_id!r} is not one ffrtmp generates: it must start with "
            f"{' or '.join(p + '-' for p in defaults.JOB_ID_PREFIXES)} and hold only "
            "letters, digits, '_', '.' and '-'"
        )
