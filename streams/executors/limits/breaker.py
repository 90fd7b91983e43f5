"""Circuit breakers per target: closed → open after N consecutive failures → half-open
after a cool-down (one trial call) → closed on success, open again on failure.

Only failures that say something about the target's health count (5xx, 429, timeouts,
connection errors); a 4xx is the caller's fault and leaves the breaker alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from flowlog.streams.executors.errors import CircuitOpen


class BreakerState(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


class CircuitBreaker:
    """One target's breaker; `clock` is a monotonic clock in seconds (injected in tests)."""

    def __init__(
        self,
        target: str,
        *,
        failure_threshold: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.failure_threshold = max(1, failure_threshold)
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state = BreakerState.closed
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.open and self._clock() - self._opened_at >= self.cooldown_s:
            self._state = BreakerState.half_open
            self._trial_in_flight = False
        return self._state

    def before_call(self) -> None:
        """Raise `CircuitOpen` (retryable) unless a call may go to the target now."""
        state = self.state
        if state is BreakerState.closed:
            return
        if state is BreakerState.half_open and not self._trial_in_flight:
            self._trial_in_flight = True
            return
        retry_in = max(0.0, self.cooldown_s - (self._clock() - self._opened_at))
        raise CircuitOpen(
            f"circuit open for {self.target} after {self._failures} consecutive failures; "
            f"calls fail fast for {retry_in:.1f}s more, then one trial call is let through"
        )

    def record_success(self) -> None:
        self._state = BreakerState.closed
        self._failures = 0
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._state is BreakerState.half_open or self._failures >= self.failure_threshold:
            self._state = BreakerState.open
            self._opened_at = self._clock()
        self._trial_in_flight = False

    def record_neutral(self) -> None:
        """The call ended saying nothing about the target (4xx, cancelled): free the trial."""
        self._trial_in_flight = False


class Breakers:
    """The breakers of one process, created on first use per target key."""

    def __init__(
        self,
        *,
        failure_threshold: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failure_threshold
        self._cooldown = cooldown_s
        self._clock = clock
        self._by_target: dict[str, CircuitBreaker] = {}

    def get(self, target: str) -> CircuitBreaker:
        breaker = self._by_target.get(target)
        if breaker is None:
            breaker = CircuitBreaker(
                target,
                failure_threshold=self._threshold,
                cooldown_s=self._cooldown,
                clock=self._clock,
            )
            self._by_target[target] = breaker
        return breaker
