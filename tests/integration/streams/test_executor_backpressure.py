"""The executor with every slot busy: it keeps polling with its partitions paused (so a
long task never costs it its group membership) and fetches the next task only when a
slot frees up."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from flowlog.schemas.events import NodeTaskIssued
from flowlog.schemas.sdk import EventProducer
from flowlog.streams.executors.runner import TaskOutcome
from flowlog.streams.runtime import compose
from flowlog.streams.runtime.kafka import ensure_topics, producer

from flowlog.settings import Settings
from tests.support.tasks import make_task


class GatedRunner:
    """Runs a task only when the test opens the gate; records what started."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started: list[str] = []

    async def run(self, task: NodeTaskIssued) -> TaskOutcome:
        self.started.append(task.task_key)
        await self.gate.wait()
        now = datetime.now(UTC)
        return TaskOutcome(status="succeeded", output={"ok": True}, error=None,
                           started_at=now, finished_at=now, model_calls=[], tool_calls=[])

    async def aclose(self) -> None:
        pass


async def test_busy_executor_pauses_and_keeps_polling(kafka_bootstrap: str,
                                                      settings: Settings) -> None:
    settings = settings.model_copy(update={"executor_max_inflight": 1,
                                           "default_partitions": 1})
    await asyncio.to_thread(ensure_topics, settings)
    tasks = [make_task("tool", {"tool": "noop"}, execution_id="ex-bp", node_id=f"n{i}")
             for i in range(3)]
    with EventProducer.from_settings(settings) as sdk:
        for t in tasks:
            sdk.publish_sync(t)

    prod = producer(settings)
    await prod.start()
    runner = GatedRunner()
    executor = compose.executor(compose.Shared(settings, prod), runner)
    polls = 0
    paused_polls = 0
    real_getmany = executor.consumer.getmany

    async def counting_getmany(*args: Any, **kw: Any) -> Any:
        nonlocal polls, paused_polls
        polls += 1
        paused_polls += bool(executor.consumer.paused())
        return await real_getmany(*args, **kw)

    executor.consumer.getmany = counting_getmany  # type: ignore[method-assign]
    loop_task = asyncio.create_task(executor.run())
    try:
        for _ in range(300):
            if runner.started:
                break
            await asyncio.sleep(0.1)
        assert runner.started == [tasks[0].task_key]
        before = polls
        await asyncio.sleep(2.5)
        assert runner.started == [tasks[0].task_key]  # one slot: nothing else fetched
        # polling went on (about once a second while waiting for a slot), paused
        assert polls - before >= 2 and paused_polls >= 2
        runner.gate.set()
        for _ in range(300):
            if len(runner.started) == 3 and not executor.running \
                    and not executor.consumer.paused():
                break
            await asyncio.sleep(0.1)
        assert runner.started == [t.task_key for t in tasks]
        assert not executor.consumer.paused()  # a free slot resumes fetching
    finally:
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)
        await prod.stop()
