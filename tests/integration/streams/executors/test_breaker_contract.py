"""One contract for every circuit-breaker store: the process's own (`LocalBreakers`) and
the one shared through Redis (`RedisBreakers`, real Redis). Cool-downs are real time here
(Redis keeps its own clock), so the suite uses short ones and waits for state, not time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from flowlog.streams.executors.errors import CircuitOpen
from flowlog.streams.executors.limits import LocalBreakers, RedisBreakers
from flowlog.streams.executors.limits.breaker import TRIAL_POLL_S, Breakers

pytestmark = pytest.mark.integration

COOLDOWN = 0.4
THRESHOLD = 3


async def _open_until_trial(b: Breakers, target: str, within: float = 10.0) -> None:
    """Wait (polling) until the breaker lets a trial call through."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            await b.before_call(target)
            return
        except CircuitOpen:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


class BreakerContract:
    """Subclasses give ``store()`` (and, for shared stores, a second view on the state)."""

    @pytest.fixture
    async def store(self, unique_id: str) -> AsyncIterator[Breakers]:
        raise NotImplementedError
        yield  # pragma: no cover

    async def test_closed_lets_calls_through_and_a_success_resets_the_count(
            self, store: Breakers) -> None:
        for _ in range(THRESHOLD - 1):
            await store.before_call("t")
            await store.record_failure("t")
        await store.record_success("t")
        for _ in range(THRESHOLD - 1):
            await store.record_failure("t")
        await store.before_call("t")  # still closed: no run of THRESHOLD failures

    async def test_opens_after_threshold_and_says_when_to_retry(self, store: Breakers) -> None:
        for _ in range(THRESHOLD):
            await store.record_failure("t")
        before = datetime.now(UTC)
        with pytest.raises(CircuitOpen) as err:
            await store.before_call("t")
        assert err.value.is_retryable and err.value.retry_at is not None
        assert before <= err.value.retry_at <= before + timedelta(seconds=COOLDOWN + 0.5)
        assert err.value.to_dict()["retry_at"] == err.value.retry_at.isoformat()
        await store.before_call("other")  # breakers are per target

    async def test_half_open_lets_one_trial_through_then_closes_on_success(
            self, store: Breakers) -> None:
        for _ in range(THRESHOLD):
            await store.record_failure("t")
        await _open_until_trial(store, "t")  # this call is the trial
        with pytest.raises(CircuitOpen) as err:  # others wait for the trial's verdict
            await store.before_call("t")
        assert err.value.retry_at is not None
        assert err.value.retry_at <= datetime.now(UTC) + timedelta(seconds=TRIAL_POLL_S + 0.5)
        await store.record_success("t")
        await store.before_call("t")
        await store.before_call("t")

    async def test_a_failed_trial_opens_again_and_a_neutral_one_frees_the_trial(
            self, store: Breakers) -> None:
        for _ in range(THRESHOLD):
            await store.record_failure("t")
        await _open_until_trial(store, "t")
        await store.record_neutral("t")  # a 4xx says nothing: the next call may try
        await store.before_call("t")
        await store.record_failure("t")  # the trial failed: open again
        with pytest.raises(CircuitOpen):
            await store.before_call("t")


class TestLocalBreakers(BreakerContract):
    @pytest.fixture
    async def store(self, unique_id: str) -> AsyncIterator[Breakers]:
        yield LocalBreakers(failure_threshold=THRESHOLD, cooldown_s=COOLDOWN)


class TestRedisBreakers(BreakerContract):
    @pytest.fixture
    async def store(self, unique_id: str, redis_url: str) -> AsyncIterator[Breakers]:
        b = RedisBreakers(redis_url, key_prefix=f"t{unique_id}.", failure_threshold=THRESHOLD,
                          cooldown_s=COOLDOWN, mode="redis")
        yield b
        await b.aclose()

    async def test_processes_share_one_state(self, unique_id: str, redis_url: str) -> None:
        """What one executor process learnt about a target protects the others."""
        a, b = (RedisBreakers(redis_url, key_prefix=f"t{unique_id}.",
                              failure_threshold=THRESHOLD, cooldown_s=30.0, mode="redis")
                for _ in range(2))
        try:
            for _ in range(THRESHOLD):
                await a.record_failure("t")
            with pytest.raises(CircuitOpen):
                await b.before_call("t")
            assert a.backend == b.backend == "redis"
        finally:
            await a.aclose()
            await b.aclose()

    async def test_auto_falls_back_to_local_breakers_without_redis(self) -> None:
        b = RedisBreakers("redis://127.0.0.1:1/0", key_prefix="x.",
                          failure_threshold=1, cooldown_s=30.0, mode="auto")
        await b.record_failure("t")
        with pytest.raises(CircuitOpen):
            await b.before_call("t")
        assert b.backend == "local"
