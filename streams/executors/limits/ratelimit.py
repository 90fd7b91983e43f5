"""Per-node-type rate limits: a token bucket, shared through Redis when it answers.

Several executor processes share one bucket per node type through a small Lua script
(Redis's own clock, so process clocks need not agree). Without Redis (or with
`executor_rate_limiter=local`) each process keeps its own bucket.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from flowlog.streams.executors.errors import RateLimited

log = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV rate (tokens/s), burst. Returns the seconds to wait ("0" = taken).
TAKE_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local s = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(s[1])
local ts = tonumber(s[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class TokenBucket:
    """A local token bucket: `rate` tokens per second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: float, *, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0 tokens per second")
        self.rate = rate
        self.burst = max(1.0, burst)
        self.tokens = self.burst
        self.updated = now

    def take(self, now: float) -> float:
        """Take one token; return 0.0 if taken, else the seconds until one is free."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """Rate limits per key (node type). `acquire` waits for a token or raises `RateLimited`."""

    def __init__(
        self,
        rates: dict[str, float],
        bursts: dict[str, float],
        *,
        mode: str = "auto",
        redis_url: str | None = None,
        key_prefix: str = "flowlog.",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rates = {k: v for k, v in rates.items() if v > 0}
        self.bursts = bursts
        self.mode = mode
        self._redis_url = redis_url
        self._prefix = key_prefix
        self._clock = clock
        self._local: dict[str, TokenBucket] = {}
        self._redis: Any = None
        self._script: Any = None
        self._redis_checked = mode == "local"
        self._lock = asyncio.Lock()

    @property
    def backend(self) -> str:
        """ "redis" or "local" (after the first acquire; "pending" before)."""
        if not self._redis_checked:
            return "pending"
        return "redis" if self._redis is not None else "local"

    def burst(self, key: str) -> float:
        return self.bursts.get(key) or max(1.0, self.rates[key])

    async def acquire(self, key: str, *, max_wait_s: float) -> None:
        rate = self.rates.get(key)
        if rate is None:
            return
        waited = 0.0
        while True:
            wait = await self._take(key, rate)
            if wait <= 0:
                return
            if waited + wait > max_wait_s:
                raise RateLimited(
                    f"rate limit of {rate:g}/s for {key} tasks leaves no token before the "
                    f"task's deadline (next token in {wait:.2f}s); raise "
                    f"FLOWLOG_EXECUTOR_RATE_LIMITS[{key!r}] or retry later"
                )
            await asyncio.sleep(wait)
            waited += wait

    async def _take(self, key: str, rate: float) -> float:
        if not self._redis_checked:
            await self._connect()
        if self._redis is not None:
            try:
                result = await self._script(
                    keys=[f"{self._prefix}ratelimit:{key}"], args=[rate, self.burst(key)]
                )
                return float(result)
            except Exception as exc:  # Redis went away: keep limiting, locally
                if self.mode == "redis":
                    raise RateLimited(f"shared rate limiter unavailable: {exc}") from exc
                log.warning("rate limiter: Redis failed (%s); using a local bucket", exc)
        bucket = self._local.get(key)
        if bucket is None:
            bucket = self._local[key] = TokenBucket(rate, self.burst(key), now=self._clock())
        return bucket.take(self._clock())

    async def _connect(self) -> None:
        async with self._lock:
            if self._redis_checked:
                return
            try:
                import redis.asyncio as aioredis

                client = aioredis.Redis.from_url(
                    self._redis_url or "", socket_connect_timeout=0.5, socket_timeout=2.0
                )
                await client.ping()
                self._redis = client
                self._script = client.register_script(TAKE_SCRIPT)
            except Exception as exc:
                if self.mode == "redis":
                    raise RateLimited(f"shared rate limiter unavailable: {exc}") from exc
                log.info("rate limiter: Redis not reachable (%s); local buckets", exc)
            finally:
                self._redis_checked = True

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
