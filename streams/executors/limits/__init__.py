"""Limits around node tasks: concurrency per node type and target, rate limits, breakers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from flowlog.streams.executors.limits.breaker import (
    Breakers,
    BreakerState,
    CircuitBreaker,
    LocalBreakers,
    RedisBreakers,
    breakers_for,
)
from flowlog.streams.executors.limits.ratelimit import RateLimiter, TokenBucket

from flowlog.settings import Settings

__all__ = ["BreakerState", "Breakers", "CircuitBreaker", "Limits", "LocalBreakers",
           "RateLimiter", "RedisBreakers", "TokenBucket"]


class Limits:
    """Every limit of one executor process: concurrency per node type and per target (from
    the settings), and the breakers and rate limiters it is given (`from_settings` builds
    those; the composition root, streams/runtime/compose.py, calls it)."""

    def __init__(self, settings: Settings, *, breakers: Breakers, rate: RateLimiter) -> None:
        self._type_limits = dict(settings.executor_concurrency)
        self._target_limit = settings.executor_target_concurrency
        self._by_type: dict[str, asyncio.Semaphore] = {}
        self._by_target: dict[str, asyncio.Semaphore] = {}
        self.breakers = breakers
        self.rate = rate

    @classmethod
    def from_settings(cls, settings: Settings, *,
                      clock: Callable[[], float] = time.monotonic) -> Limits:
        """The breakers `FLOWLOG_BREAKER_STORE` asks for (one state per target in Redis
        shared by every executor process, or each process's own) and the rate limiters of
        `FLOWLOG_EXECUTOR_RATE_LIMITER`. Their Redis clients connect on first use; `aclose`
        closes them."""
        return cls(settings, breakers=breakers_for(settings, clock=clock),
                   rate=RateLimiter(settings.executor_rate_limits,
                                    settings.executor_rate_burst,
                                    mode=settings.executor_rate_limiter,
                                    redis_url=settings.redis_url,
                                    key_prefix=settings.topic_prefix, clock=clock))

    def node_type(self, node_type: str) -> asyncio.Semaphore:
        sem = self._by_type.get(node_type)
        if sem is None:
            sem = asyncio.Semaphore(self._type_limits.get(node_type, 64))
            self._by_type[node_type] = sem
        return sem

    def target(self, target: str) -> asyncio.Semaphore:
        sem = self._by_target.get(target)
        if sem is None:
            sem = asyncio.Semaphore(self._target_limit)
            self._by_target[target] = sem
        return sem

    async def aclose(self) -> None:
        await self.rate.aclose()
        await self.breakers.aclose()
