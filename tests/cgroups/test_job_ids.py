"""Job ids are cgroup names: ffrtmp owns only those it could have generated."""

from __future__ import annotations

import pytest

from ffrtmp.cgroups import is_job_name, job_id_named


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("manual-encode-7", "manual-encode-7"),  # already one of ours: kept
        ("nightly encode", "manual-nightly_encode"),  # cleaned and prefixed
        ("../../etc", "manual-.._.._etc"),  # never a path
        ("x" * 300, "manual-" + "x" * 200),  # bounded, far below the 255-byte name limit
    ],
)
def test_an_operators_job_name_becomes_one_ffrtmp_may_own(given: str, expected: str) -> None:
    named = job_id_named("manual", given)
    assert named == expected
    assert is_job_name(named)
