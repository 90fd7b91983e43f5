"""``flowlog_open_breakers`` for both breaker stores, on the real Redis: with the shared
store the gauge reads, when scraped (from another thread, as the metrics server does), the
state in Redis of every target this process has called — including breakers another
process opened — and falls back to the process's own breakers when Redis is away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
from flowlog.streams.executors.limits import LocalBreakers, RedisBreakers
from flowlog.streams.executors.limits.breaker import Breakers

from flowlog.observability import hooks
from flowlog.observability.metrics import REGISTRY

pytestmark = pytest.mark.integration
THRESHOLD = 2


async def _scrape(breakers: Breakers) -> float:
    """Watch ``breakers`` as the worker does, read the gauge from another thread."""
    hooks.watch_breakers(SimpleNamespace(limits=SimpleNamespace(breakers=breakers)))
    value = await asyncio.to_thread(REGISTRY.get_sample_value, "flowlog_open_breakers")
    assert value is not None
    return value


async def _open(b: Breakers, target: str) -> None:
    for _ in range(THRESHOLD):
        await b.record_failure(target)


@pytest.fixture
async def shared(unique_id: str, redis_url: str) -> AsyncIterator[list[RedisBreakers]]:
    """Two executor processes' views on one Redis store."""
    views = [RedisBreakers(redis_url, key_prefix=f"t{unique_id}.", failure_threshold=THRESHOLD,
                           cooldown_s=30.0, mode="redis") for _ in range(2)]
    yield views
    for v in views:
        await v.aclose()


async def test_redis_store_counts_the_shared_state_of_known_targets(
        shared: list[RedisBreakers]) -> None:
    mine, other = shared
    assert await _scrape(mine) == 0
    await mine.before_call("crm")
    await mine.before_call("billing")
    assert await _scrape(mine) == 0  # known, closed
    await _open(mine, "crm")
    assert await _scrape(mine) == 1
    await _open(other, "billing")  # another process opened a target this one calls
    assert await _scrape(mine) == 2
    await _open(other, "mail")  # a target this process never called: not its concern
    assert await _scrape(mine) == 2
    assert await _scrape(other) == 2  # billing and mail (it never called crm)
    await mine.record_success("billing")  # the trial succeeded: closed for everyone
    assert await _scrape(other) == 1
    assert await _scrape(mine) == 1


async def test_redis_store_falls_back_to_own_breakers(redis_url: str) -> None:
    b = RedisBreakers("redis://127.0.0.1:1/0", key_prefix="x.", failure_threshold=THRESHOLD,
                      cooldown_s=30.0, mode="auto")
    try:
        await _open(b, "crm")
        assert b.backend == "local"
        assert await _scrape(b) == 1
    finally:
        await b.aclose()


async def test_local_store_counts_open_breakers() -> None:
    b = LocalBreakers(failure_threshold=THRESHOLD, cooldown_s=30.0)
    await b.before_call("crm")
    assert await _scrape(b) == 0
    await _open(b, "crm")
    await _open(b, "billing")
    assert await _scrape(b) == 2
    await b.record_success("crm")
    assert await _scrape(b) == 1
