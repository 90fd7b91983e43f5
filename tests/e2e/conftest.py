"""End-to-end harness: a worker with every role, in-process, on the test's own topics."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from flowlog.schemas.sdk import EventProducer
from flowlog.streams.runtime import tools
from flowlog.streams.runtime.worker import Worker

from flowlog.settings import Settings
from tests.support.fake_llm import FakeLLMServer
from tests.support.fixtures import (  # noqa: F401
    fake_llm,
    fake_llm_server,
    fake_webhook,
    fake_webhook_server,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


@pytest.fixture(autouse=True)
async def _stacks_before_timeout(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """pytest-timeout shows threads only; a test stuck on an await needs the asyncio tasks'
    stacks to say on which one. Printed to stderr 10 s before the timeout."""
    limit = float(request.config.getini("timeout") or 600) - 10

    async def watch() -> None:
        await asyncio.sleep(limit)
        print(f"--- asyncio tasks of {request.node.nodeid} after {limit:.0f}s ---",
              file=sys.stderr)
        for task in asyncio.all_tasks():
            task.print_stack(file=sys.stderr)

    watcher = asyncio.create_task(watch())
    yield
    watcher.cancel()


class Engine:
    """A running worker plus shell-side helpers, all on one settings object."""

    def __init__(self, settings: Settings, worker: Worker) -> None:
        self.settings = settings
        self.worker = worker

    async def apply(self, path: Path, **kw: Any) -> str:
        return await asyncio.to_thread(tools.apply_definition, self.settings, path, **kw)

    async def trigger(self, workflow_id: str, input_: dict[str, Any], **kw: Any) -> str:
        return await asyncio.to_thread(tools.trigger, self.settings, workflow_id, input_, **kw)

    async def trigger_many(self, workflow_ids: list[str]) -> list[str]:
        """One trigger per workflow id, published in this order in one go."""
        from flowlog.schemas.events import TriggerReceived

        triggers = [TriggerReceived(workflow_id=w, workflow_version=0, source="manual",
                                    input={}) for w in workflow_ids]

        def send() -> None:
            with EventProducer.from_settings(self.settings) as producer:
                assert producer.publish_many(triggers).ok

        await asyncio.to_thread(send)
        return [t.execution_id for t in triggers]

    async def run(self, workflow_id: str, input_: dict[str, Any], within: float = 60.0,
                  **kw: Any) -> list[dict[str, Any]]:
        """Trigger and wait for the terminal event; returns every event of the execution."""
        execution_id = await self.trigger(workflow_id, input_, **kw)
        return await self.wait(execution_id, within)

    async def command(self, cls: Any, execution_id: str, workflow_id: str,
                      **fields: Any) -> None:
        """Publish a command (CancelRequested, RetryNodeRequested, EventReceived, ...)."""
        event = cls(execution_id=execution_id, workflow_id=workflow_id, workflow_version=1,
                    **fields)

        def send() -> None:
            with EventProducer.from_settings(self.settings) as producer:
                producer.publish_sync(event)

        await asyncio.to_thread(send)

    async def until(self, execution_id: str, event_type: str, within: float = 30.0,
                    **match: Any) -> list[dict[str, Any]]:
        """Wait until the execution has an event of this type (fields matching)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            events = await tools.collect(self.settings, execution_id)
            if any(e["event_type"] == event_type
                   and all(e.get(k) == v for k, v in match.items()) for e in events):
                return events
            await asyncio.sleep(0.2)
        raise AssertionError(f"{execution_id}: no {event_type} {match} in {within}s")

    async def wait(self, execution_id: str, within: float = 60.0) -> list[dict[str, Any]]:
        events = await tools.collect(self.settings, execution_id, follow=True, within=within)
        assert events and events[-1]["event_type"] in tools.TERMINAL, (
            f"{execution_id} did not finish in {within}s: "
            f"{[e['event_type'] for e in events]}")
        return events


def patched(example: str, folder: Path, change: Any = None) -> Path:
    """An example definition, changed by ``change(doc)`` (shorter delays, local URLs)."""
    doc = yaml.safe_load((EXAMPLES / example).read_text())
    if change is not None:
        change(doc)
    out = folder / example
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def events_of(events: list[dict[str, Any]], event_type: str, **match: Any
              ) -> list[dict[str, Any]]:
    return [e for e in events if e["event_type"] == event_type
            and all(e.get(k) == v for k, v in match.items())]


@pytest.fixture
def engine_settings(settings: Settings, kafka_bootstrap: str, tmp_path: Path,
                    fake_llm: FakeLLMServer) -> Settings:  # noqa: F811
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("PARTNER_KEY", "HELPDESK_TOKEN"):
        (secrets / name).write_text(f"{name.lower()}-value")
    return settings.model_copy(update={
        "default_partitions": 3, "timer_tick_ms": 50, "executor_rate_limiter": "local",
        "tool_modules": ["tests.e2e.e2e_tools"], "secrets_dir": secrets,
        "openai_base_url": fake_llm.openai_base_url, "openai_api_key": "test-key",
        "anthropic_base_url": fake_llm.anthropic_base_url, "anthropic_api_key": "test-key",
    })


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
