"""End-to-end harness: a worker with every role, in-process, on the test's own topics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from flowlog.streams.runtime import tools
from flowlog.streams.runtime.worker import Worker

from flowlog.settings import Settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


class Engine:
    """A running worker plus shell-side helpers, all on one settings object."""

    def __init__(self, settings: Settings, worker: Worker) -> None:
        self.settings = settings
        self.worker = worker

    async def apply(self, path: Path, **kw: Any) -> str:
        return await asyncio.to_thread(tools.apply_definition, self.settings, path, **kw)

    async def trigger(self, workflow_id: str, input_: dict[str, Any], **kw: Any) -> str:
        return await asyncio.to_thread(tools.trigger, self.settings, workflow_id, input_, **kw)

    async def run(self, workflow_id: str, input_: dict[str, Any], timeout: float = 60.0,
                  **kw: Any) -> list[dict[str, Any]]:
        """Trigger and wait for the terminal event; returns every event of the execution."""
        execution_id = await self.trigger(workflow_id, input_, **kw)
        return await self.wait(execution_id, timeout)

    async def wait(self, execution_id: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        events = await tools.collect(self.settings, execution_id, follow=True, timeout=timeout)
        assert events and events[-1]["event_type"] in tools.TERMINAL, (
            f"{execution_id} did not finish in {timeout}s: "
            f"{[e['event_type'] for e in events]}")
        return events


@pytest.fixture
def engine_settings(settings: Settings, kafka_bootstrap: str) -> Settings:
    return settings.model_copy(update={"default_partitions": 3, "timer_tick_ms": 50,
                                       "executor_rate_limiter": "local"})


@pytest.fixture
def make_engine(engine_settings: Settings) -> Callable[..., Any]:
    started: list[Worker] = []

    async def make(runner_factory: Any = None, **overrides: Any) -> Engine:
        s = engine_settings.model_copy(update=overrides) if overrides else engine_settings
        worker = Worker(s, ["all"], runner_factory=runner_factory)
        await worker.start()
        started.append(worker)
        return Engine(s, worker)

    yield make
    # stopped by the async fixture below


@pytest.fixture
async def engine(make_engine: Callable[..., Any]) -> AsyncIterator[Engine]:
    eng = await make_engine()
    try:
        yield eng
    finally:
        await eng.worker.stop()
