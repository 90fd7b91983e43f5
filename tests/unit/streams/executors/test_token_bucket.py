"""Token bucket arithmetic (the local bucket; the Redis script does the same sums)."""

from __future__ import annotations

import pytest
from flowlog.streams.executors.limits import TokenBucket


def test_burst_then_one_token_per_interval() -> None:
    b = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [b.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(0.0) == pytest.approx(0.5)  # one token every 1/rate s
    assert b.take(0.25) == pytest.approx(0.25)
    assert b.take(0.5) == 0.0
    assert b.take(0.5) == pytest.approx(0.5)


def test_refill_is_capped_at_burst() -> None:
    b = TokenBucket(rate=10.0, burst=2, now=0.0)
    b.take(0.0)
    b.take(0.0)
    assert b.take(100.0) == 0.0
    assert b.take(100.0) == 0.0
    assert b.take(100.0) == pytest.approx(0.1)


def test_clock_going_backwards_adds_nothing() -> None:
    b = TokenBucket(rate=1.0, burst=1, now=10.0)
    assert b.take(10.0) == 0.0
    assert b.take(5.0) == pytest.approx(1.0)


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0, burst=1)
