"""Dead letters end to end: an engine worker and the deadletters process in-process, on
the test's own topics and its own RabbitMQ exchanges and queues (deleted afterwards)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from flowlog.streams.deadletters import topology
from flowlog.streams.deadletters.bridge import run as run_deadletters

from flowlog.settings import Settings
from tests.e2e.conftest import Engine, engine, engine_settings, make_engine  # noqa: F401
from tests.support.fixtures import fake_llm, fake_llm_server  # noqa: F401


def flaky_workflow(folder: Path, workflow_id: str, succeed_on: int,
                   node_type_tool: str = "flaky") -> Path:
    """One tool node that fails (retryable) until attempt ``succeed_on``; no retries inside
    Kafka (max_attempts 1), dead-lettered when it fails."""
    doc = {
        "id": workflow_id, "name": workflow_id,
        "nodes": {"call": {"type": "tool", "tool": node_type_tool,
                           "input": {"succeed_on": str(succeed_on)},
                           "retry": {"max_attempts": 1}, "on_failure": "dead_letter"}},
    }
    path = folder / f"{workflow_id}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def dl_settings(engine_settings: Settings, amqp_url: str) -> Settings:  # noqa: F811
    return engine_settings.model_copy(update={
        "deadletter_ladder": [1.0, 2.0], "deadletter_batch": 100, "metrics_enabled": False,
        "deadletter_depth_interval_s": 0.5,
    })


class DeadLetters:
    """The deadletters process, started and stopped by the test."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(run_deadletters(self.settings, self.stop))

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 30)


@pytest.fixture
async def deadletters(dl_settings: Settings) -> AsyncIterator[Callable[..., Any]]:
    started: list[DeadLetters] = []

    async def start(**overrides: Any) -> DeadLetters:
        s = dl_settings.model_copy(update=overrides) if overrides else dl_settings
        d = DeadLetters(s)
        await d.start()
        started.append(d)
        return d

    yield start
    for d in started:
        with contextlib.suppress(Exception):
            await d.close()
    with contextlib.suppress(Exception):
        conn = await topology.connect(dl_settings)
        async with conn:
            await topology.delete(await conn.channel(), dl_settings)


async def until(check: Callable[[], Any], within: float = 60.0, what: str = "") -> Any:
    """Poll an async or plain check until it returns something truthy (a deadline, no
    fixed sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.1)
