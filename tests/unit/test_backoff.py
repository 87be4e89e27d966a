"""The backoff formula of ffrtmp.backoff, checked exactly and as properties."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ffrtmp import defaults
from ffrtmp.backoff import BackoffPolicy
from ffrtmp.settings import MAX_DURATION_SECONDS

finite = {"allow_nan": False, "allow_infinity": False}


@st.composite
def policies(draw):
    initial = draw(st.floats(min_value=1e-3, max_value=1e4, **finite))
    multiplier = draw(st.floats(min_value=1.0, max_value=100.0, **finite))
    max_delay = draw(st.floats(min_value=initial, max_value=1e7, **finite))
    jitter = draw(st.floats(min_value=0.0, max_value=0.999, **finite))
    max_attempts = draw(st.integers(min_value=1, max_value=100))
    return BackoffPolicy(initial, multiplier, max_delay, jitter, max_attempts)


@st.composite
def extreme_policies(draw):
    # Anything the constructor accepts, down to subnormal delays and caps near the float limit.
    # Durations go up to a century (MAX_DURATION_SECONDS), the multiplier has no bound.
    initial = draw(st.floats(min_value=5e-324, max_value=MAX_DURATION_SECONDS, **finite))
    multiplier = draw(st.floats(min_value=1.0, **finite))
    max_delay = draw(st.floats(min_value=initial, max_value=MAX_DURATION_SECONDS, **finite))
    jitter = draw(st.floats(min_value=0.0, max_value=0.9999999, **finite))
    return BackoffPolicy(initial, multiplier, max_delay, jitter, 1)


any_policy = policies() | extreme_policies()
attempts = st.integers(min_value=1, max_value=10**6) | st.integers(min_value=1, max_value=10**400)


def test_defaults_come_from_the_defaults_module():
    policy = BackoffPolicy()
    assert (
        policy.initial_delay,
        policy.multiplier,
        policy.max_delay,
        policy.jitter,
        policy.max_attempts,
    ) == (
        defaults.RETRY_INITIAL_DELAY_SECONDS,
        defaults.RETRY_MULTIPLIER,
        defaults.RETRY_MAX_DELAY_SECONDS,
        defaults.RETRY_JITTER,
        defaults.RETRY_MAX_ATTEMPTS,
    )


def test_default_base_delays_double_up_to_five_minutes():
    policy = BackoffPolicy()
    assert [policy.base_delay(n) for n in range(1, 12)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        32.0,
        64.0,
        128.0,
        256.0,
        300.0,
        300.0,
    ]


def test_huge_attempt_numbers_do_not_overflow():
    policy = BackoffPolicy()
    assert policy.base_delay(10**6) == 300.0
    assert policy.base_delay(10**400) == 300.0
    assert 270.0 <= policy.delay(10**400, random.Random(1)) <= 300.0


def test_extreme_but_valid_policy_does_not_overflow():
    # The longest max_delay a setting takes (a century: a later retry time overflows a date).
    longest = MAX_DURATION_SECONDS
    policy = BackoffPolicy(initial_delay=5e-324, multiplier=1.5, max_delay=longest, jitter=0.0)
    assert policy.base_delay(1) == 5e-324
    assert policy.base_delay(5000) == longest


def test_multiplier_one_is_a_constant_delay():
    policy = BackoffPolicy(initial_delay=3.0, multiplier=1.0, max_delay=10.0, jitter=0.0)
    assert {policy.base_delay(n) for n in (1, 2, 50, 10**300)} == {3.0}


def test_zero_jitter_delay_is_the_base_delay():
    policy = BackoffPolicy(jitter=0.0)
    assert [policy.delay(n) for n in range(1, 11)] == [policy.base_delay(n) for n in range(1, 11)]


def test_seeded_rng_gives_repeatable_delays():
    policy = BackoffPolicy()
    first = [policy.delay(n, random.Random(42)) for n in range(1, 8)]
    second = [policy.delay(n, random.Random(42)) for n in range(1, 8)]
    assert first == second
    assert first != [policy.base_delay(n) for n in range(1, 8)]


def test_jitter_spreads_over_the_whole_range():
    policy = BackoffPolicy(initial_delay=10.0, jitter=0.5)
    rng = random.Random(7)
    draws = [policy.delay(1, rng) for _ in range(2000)]
    assert min(draws) < 5.5 and max(draws) > 14.5
    assert all(5.0 <= d <= 15.0 for d in draws)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial_delay": 0}, "initial_delay must be a positive duration, not 0"),
        ({"initial_delay": -1.0}, "initial_delay must be a positive duration, not -1.0"),
        ({"multiplier": 0.5}, "multiplier must be at least 1, not 0.5"),
        (
            {"initial_delay": 10.0, "max_delay": 5.0},
            "max_delay must not be shorter than initial_delay (10s), not 5s",
        ),
        ({"jitter": 1.0}, "jitter must be at least 0 and below 1, not 1"),
        ({"jitter": -0.1}, "jitter must be at least 0 and below 1, not -0.1"),
        ({"max_attempts": 0}, "max_attempts must be at least 1, not 0"),
        ({"max_attempts": 2.5}, "max_attempts must be a whole number, not 2.5"),
        ({"max_attempts": True}, "max_attempts must be a whole number, not true"),
        ({"initial_delay": float("nan")}, "initial_delay must be a positive duration, not nan"),
        ({"max_delay": float("inf")}, "max_delay must be a positive duration, not inf"),
        ({"multiplier": "2"}, "multiplier must be a number, not '2'"),
    ],
)
def test_constructor_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError) as info:
        BackoffPolicy(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize("attempt", [0, -1, 1.5, True, "1"])
def test_attempt_must_be_a_positive_integer(attempt):
    with pytest.raises(ValueError, match="attempt must be an integer of at least 1"):
        BackoffPolicy().base_delay(attempt)


@given(policy=any_policy)
def test_property_first_retry_waits_the_initial_delay(policy):
    assert policy.base_delay(1) == policy.initial_delay


@given(policy=any_policy, attempt=attempts, step=st.integers(min_value=1, max_value=1000))
def test_property_base_delay_is_monotone_and_capped(policy, attempt, step):
    here, later = policy.base_delay(attempt), policy.base_delay(attempt + step)
    assert policy.initial_delay <= here <= later <= policy.max_delay


@given(policy=any_policy, attempt=attempts, seed=st.integers())
def test_property_delay_stays_within_the_jitter_band(policy, attempt, seed):
    base = policy.base_delay(attempt)
    delay = policy.delay(attempt, random.Random(seed))
    assert base * (1 - policy.jitter) <= delay <= min(policy.max_delay, base * (1 + policy.jitter))


@given(
    initial=st.floats(**finite),
    multiplier=st.floats(**finite),
    max_delay=st.floats(**finite),
    jitter=st.floats(**finite),
    max_attempts=st.integers(min_value=-5, max_value=5),
)
def test_property_constructor_accepts_exactly_the_valid_values(
    initial, multiplier, max_delay, jitter, max_attempts
):
    valid = (
        initial > 0
        and multiplier >= 1
        and max_delay >= initial
        and max_delay <= MAX_DURATION_SECONDS
        and 0 <= jitter < 1
        and max_attempts >= 1
    )
    if valid:
        BackoffPolicy(initial, multiplier, max_delay, jitter, max_attempts)
    else:
        with pytest.raises(ValueError):
            BackoffPolicy(initial, multiplier, max_delay, jitter, max_attempts)
