"""The shared rate limiter on the real Redis: two limiters (two executor processes) draw
from one bucket; local limiters do not share; no Redis → local."""

from __future__ import annotations

import pytest
from flowlog.streams.executors import TaskRunner
from flowlog.streams.executors.errors import RateLimited
from flowlog.streams.executors.limits import RateLimiter

from flowlog.settings import Settings
from tests.support.tasks import make_task


def limiter(settings: Settings, redis_url: str, mode: str = "redis") -> RateLimiter:
    return RateLimiter({"webhook": 0.5}, {"webhook": 2}, mode=mode, redis_url=redis_url,
                       key_prefix=settings.topic_prefix)  # fmt: skip


async def test_two_processes_share_one_bucket(settings: Settings, redis_url: str) -> None:
    a, b = limiter(settings, redis_url), limiter(settings, redis_url)
    try:
        await a.acquire("webhook", max_wait_s=0)
        await b.acquire("webhook", max_wait_s=0)  # the burst of 2 is now spent, across both
        assert a.backend == b.backend == "redis"
        with pytest.raises(RateLimited, match=r"0\.5/s for webhook"):
            await a.acquire("webhook", max_wait_s=0)
        with pytest.raises(RateLimited):
            await b.acquire("webhook", max_wait_s=0)
        await a.acquire("tool", max_wait_s=0)  # no limit set for tool
    finally:
        await a.aclose()
        await b.aclose()


async def test_waits_for_a_token_when_the_deadline_allows(
    settings: Settings, redis_url: str
) -> None:
    fast = RateLimiter({"agent": 20.0}, {"agent": 1}, mode="redis", redis_url=redis_url,
                       key_prefix=settings.topic_prefix)  # fmt: skip
    try:
        await fast.acquire("agent", max_wait_s=0)
        await fast.acquire("agent", max_wait_s=5)  # waits ~50 ms for the next token
    finally:
        await fast.aclose()


async def test_local_limiters_do_not_share(settings: Settings, redis_url: str) -> None:
    a, b = limiter(settings, redis_url, "local"), limiter(settings, redis_url, "local")
    for lim in (a, b):
        await lim.acquire("webhook", max_wait_s=0)
        await lim.acquire("webhook", max_wait_s=0)
        assert lim.backend == "local"


async def test_auto_falls_back_to_local_without_redis(settings: Settings) -> None:
    lim = RateLimiter({"tool": 1.0}, {}, mode="auto", redis_url="redis://127.0.0.1:1/0",
                      key_prefix=settings.topic_prefix)  # fmt: skip
    await lim.acquire("tool", max_wait_s=0)
    assert lim.backend == "local"
    with pytest.raises(RateLimited):
        await lim.acquire("tool", max_wait_s=0)


async def test_runner_reports_rate_limited_as_retryable(
    exec_settings: Settings, redis_url: str
) -> None:
    settings = exec_settings.model_copy(update={
        "executor_rate_limits": {"tool": 0.2}, "executor_rate_limiter": "auto"})  # fmt: skip
    runner = TaskRunner(settings)
    try:
        first = await runner.run(make_task("tool", {"tool": "noop"}, {}))
        backend = runner.limits.rate.backend
        second = await runner.run(make_task("tool", {"tool": "noop"}, {}, timeout_ms=200))
    finally:
        await runner.aclose()
    assert first.status == "succeeded" and backend == "redis"
    assert second.error and second.error["type"] == "rate_limited" and second.error["retryable"]
