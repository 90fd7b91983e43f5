"""One contract for both rate-limiter stores (this process's buckets; the Redis bucket
shared by every executor process): a burst is granted at once, then tokens come at the
rate, a deadline too short for the next token is `RateLimited`, keys do not share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from flowlog.streams.executors.errors import RateLimited
from flowlog.streams.executors.limits import RateLimiter

pytestmark = pytest.mark.integration


class RateLimiterContract:
    mode = ""

    @pytest.fixture
    async def limiter(self, unique_id: str, redis_url: str) -> AsyncIterator[RateLimiter]:
        lim = RateLimiter({"webhook": 20.0, "agent": 0.1}, {"webhook": 3, "agent": 1},
                          mode=self.mode, redis_url=redis_url, key_prefix=f"t{unique_id}.")
        yield lim
        await lim.aclose()

    async def test_the_burst_is_granted_at_once(self, limiter: RateLimiter) -> None:
        for _ in range(3):
            await limiter.acquire("webhook", max_wait_s=0)
        assert limiter.backend == self.mode

    async def test_past_the_burst_a_token_is_waited_for_within_the_deadline(
            self, limiter: RateLimiter) -> None:
        for _ in range(3):
            await limiter.acquire("webhook", max_wait_s=0)
        await limiter.acquire("webhook", max_wait_s=5)  # the next token, ~50 ms away

    async def test_no_token_before_the_deadline_is_rate_limited(
            self, limiter: RateLimiter) -> None:
        await limiter.acquire("agent", max_wait_s=0)
        with pytest.raises(RateLimited, match=r"0\.1/s for agent") as err:
            await limiter.acquire("agent", max_wait_s=0.5)  # next token in ~10 s
        assert err.value.is_retryable

    async def test_keys_have_their_own_buckets_and_unlimited_keys_pass(
            self, limiter: RateLimiter) -> None:
        await limiter.acquire("agent", max_wait_s=0)
        for _ in range(3):
            await limiter.acquire("webhook", max_wait_s=0)
        for _ in range(100):
            await limiter.acquire("tool", max_wait_s=0)


class TestLocalRateLimiter(RateLimiterContract):
    mode = "local"


class TestRedisRateLimiter(RateLimiterContract):
    mode = "redis"
