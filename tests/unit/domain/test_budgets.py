"""Token buckets (`domain.budgets`): never more than the burst plus the rate over any window,
refilled at the rate, and the wait they announce is the wait that works."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.budgets import ExpiringSet, KeyedBuckets, Rate, TokenBucket

FAST = settings(max_examples=200, deadline=None)
# Float seconds: a bound computed from the same float inputs may be off by a few ulps.
EPSILON = 1e-6

rates = st.builds(
    Rate,
    per_second=st.floats(min_value=0.1, max_value=1000, allow_nan=False),
    burst=st.integers(min_value=1, max_value=50),
)
gaps = st.lists(st.floats(min_value=0, max_value=2, allow_nan=False), min_size=1, max_size=300)


def admitted_times(rate: Rate, gaps: list[float]) -> list[float]:
    now = 1000.0
    bucket = TokenBucket.full(rate, now)
    admitted = []
    for gap in gaps:
        now += gap
        if bucket.take(now) == 0.0:
            admitted.append(now)
    return admitted


@FAST
@given(rates, gaps)
def test_no_window_admits_more_than_the_burst_plus_the_rate(rate: Rate, gaps: list[float]) -> None:
    admitted = admitted_times(rate, gaps)
    for first, last in itertools.combinations(range(len(admitted)), 2):
        window = admitted[last] - admitted[first]
        assert last - first + 1 <= rate.burst + rate.per_second * window + EPSILON


@FAST
@given(rates, st.integers(min_value=1, max_value=200))
def test_a_caller_at_the_rate_is_never_refused_after_its_burst(rate: Rate, count: int) -> None:
    bucket = TokenBucket.full(rate, 0.0)
    assert all(bucket.take(0.0) == 0.0 for _ in range(rate.burst))
    # Slightly slower than the rate, so that float rounding cannot make a step short.
    step = (1 + EPSILON) / rate.per_second
    assert all(bucket.take(step * (i + 1)) == 0.0 for i in range(count))


@FAST
@given(rates, st.floats(min_value=0, max_value=100, allow_nan=False))
def test_the_announced_wait_is_exactly_when_the_next_request_fits(rate: Rate, later: float) -> None:
    bucket = TokenBucket.full(rate, 0.0)
    while bucket.take(0.0) == 0.0:
        pass
    wait = bucket.take(later)
    if wait == 0.0:
        assert later * rate.per_second >= 1 - EPSILON
        return
    assert wait == pytest.approx((1 - later * rate.per_second) / rate.per_second)
    assert bucket.take(later + wait + EPSILON) == 0.0


def test_a_refused_request_takes_nothing_and_refills_at_the_rate() -> None:
    bucket = TokenBucket.full(Rate(per_second=2, burst=3), 10.0)
    assert [bucket.take(10.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(10.0) == 0.5
    assert bucket.take(10.25) == 0.25  # half a token came back, nothing was taken
    assert bucket.take(10.5) == 0.0
    assert bucket.take(100.0) == 0.0  # a long pause refills to the burst, no further
    assert bucket.tokens == 2


def test_a_refund_gives_back_a_token_but_never_more_than_the_burst() -> None:
    bucket = TokenBucket.full(Rate(per_second=1, burst=2), 0.0)
    bucket.refund(0.0)
    assert bucket.tokens == 2
    bucket.take(0.0)
    bucket.refund(0.0)
    assert bucket.tokens == 2


def test_a_clock_that_steps_back_credits_nothing_twice() -> None:
    bucket = TokenBucket.full(Rate(per_second=1, burst=1), 10.0)
    assert bucket.take(10.0) == 0.0
    assert bucket.take(5.0) > 0  # back in time: no refill
    assert bucket.take(10.5) == pytest.approx(0.5)
    assert bucket.take(11.0) == 0.0


def test_rates_must_let_something_through() -> None:
    for per_second, burst in ((0, 1), (-1, 1), (1, 0)):
        with pytest.raises(ValueError):
            Rate(per_second=per_second, burst=burst)


def test_each_key_has_its_own_bucket_and_the_least_recent_goes_first() -> None:
    buckets = KeyedBuckets(Rate(per_second=1, burst=1), max_keys=2)
    assert buckets.take("a", 0.0) == 0.0
    assert buckets.take("b", 0.0) == 0.0
    assert buckets.take("a", 0.0) == 1.0  # a's bucket is empty, b's is its own
    assert buckets.wait("a", 0.0) == 1.0  # a is now the most recent
    assert buckets.take("c", 0.0) == 0.0  # room for c: b goes
    assert len(buckets) == 2
    assert buckets.take("a", 0.0) == 1.0  # a was kept, still empty
    assert buckets.take("b", 0.0) == 0.0  # b comes back full


def test_an_expiring_set_forgets_after_its_ttl_and_beyond_its_size() -> None:
    refused = ExpiringSet(ttl_s=10, max_items=2)
    refused.add(b"x", 0.0)
    assert refused.holds(b"x", 9.9)
    assert not refused.holds(b"x", 10.0)
    assert len(refused) == 0
    refused.add(b"x", 0.0)
    refused.add(b"y", 0.0)
    assert refused.holds(b"x", 1.0)  # seen: y is now the least recent
    refused.add(b"z", 1.0)
    assert (refused.holds(b"x", 2.0), refused.holds(b"y", 2.0)) == (True, False)
    assert refused.holds(b"z", 2.0)
