"""Circuit breaker state machine, on an injected clock."""

from __future__ import annotations

import pytest
from flowlog.streams.executors.errors import CircuitOpen
from flowlog.streams.executors.limits import BreakerState, CircuitBreaker, LocalBreakers


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_n_consecutive_failures_only() -> None:
    clock = Clock()
    b = CircuitBreaker("h", failure_threshold=3, cooldown_s=10, clock=clock)
    b.record_failure()
    b.record_failure()
    b.record_success()  # a success resets the count
    b.record_failure()
    b.record_failure()
    assert b.state is BreakerState.closed
    b.before_call()
    b.record_failure()
    assert b.state is BreakerState.open
    with pytest.raises(CircuitOpen) as err:
        b.before_call()
    assert err.value.is_retryable and err.value.type == "circuit_open"
    assert "h" in err.value.message


def test_half_open_after_cooldown_lets_one_trial_through() -> None:
    clock = Clock()
    b = CircuitBreaker("h", failure_threshold=1, cooldown_s=10, clock=clock)
    b.record_failure()
    clock.now += 9.9
    with pytest.raises(CircuitOpen):
        b.before_call()
    clock.now += 0.1
    assert b.state is BreakerState.half_open
    b.before_call()  # the trial
    with pytest.raises(CircuitOpen):
        b.before_call()  # others still fail fast while the trial runs
    b.record_success()
    assert b.state is BreakerState.closed
    b.before_call()


def test_failed_trial_reopens_for_a_full_cooldown() -> None:
    clock = Clock()
    b = CircuitBreaker("h", failure_threshold=2, cooldown_s=5, clock=clock)
    b.record_failure()
    b.record_failure()
    clock.now += 5
    b.before_call()
    b.record_failure()  # one failure in half-open is enough
    assert b.state is BreakerState.open
    clock.now += 4.9
    with pytest.raises(CircuitOpen):
        b.before_call()
    clock.now += 0.1
    b.before_call()


def test_neutral_outcome_frees_the_trial_without_closing() -> None:
    clock = Clock()
    b = CircuitBreaker("h", failure_threshold=1, cooldown_s=1, clock=clock)
    b.record_failure()
    clock.now += 1
    b.before_call()
    b.record_neutral()  # e.g. a 404: says nothing about health
    assert b.state is BreakerState.half_open
    b.before_call()  # another trial may go


def test_breakers_are_per_target() -> None:
    clock = Clock()
    breakers = LocalBreakers(failure_threshold=1, cooldown_s=1, clock=clock)
    breakers.get("http://a").record_failure()
    assert breakers.get("http://a").state is BreakerState.open
    assert breakers.get("http://b").state is BreakerState.closed
    assert breakers.get("http://a") is breakers.get("http://a")
