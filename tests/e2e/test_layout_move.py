"""Moving a deployment from the classic layout to the processor: a processor partition its own
group never committed starts where the `<prefix>orchestrator` group got to, so inputs the
classic orchestrator already decided are not decided again (docs/engine.md, "Layouts")."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from flowlog.schemas.events import TriggerReceived
from flowlog.schemas.sdk import EventProducer
from flowlog.streams.runtime import kafka, tools
from flowlog.streams.runtime.worker import Worker

from flowlog.settings import Settings
from tests.e2e.conftest import EXAMPLES, Engine

pytestmark = pytest.mark.e2e


def _triggers(count: int) -> list[TriggerReceived]:
    return [TriggerReceived(workflow_id="bench-5node", workflow_version=0, source="manual",
                            input={}) for _ in range(count)]


def _publish(settings: Settings, triggers: list[TriggerReceived]) -> None:
    with EventProducer.from_settings(settings) as producer:
        assert producer.publish_many(triggers).ok


async def _commit_as_the_orchestrator(settings: Settings) -> dict[int, int]:
    """Commit the triggers topic's end offsets for the classic orchestrator's group (what an
    orchestrator that decided every trigger so far leaves behind)."""
    topic = kafka.catalog(settings).name("triggers")
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                group_id=settings.topic_prefix + "orchestrator",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.default_partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit({tp: ends[tp] for tp in tps})
    finally:
        await consumer.stop()
    return {tp.partition: o for tp, o in ends.items()}


async def test_a_processor_takes_over_the_orchestrator_groups_offsets(
        engine_settings: Settings) -> None:
    s = engine_settings
    await asyncio.to_thread(kafka.ensure_topics, s)
    await asyncio.to_thread(tools.apply_definition, s, EXAMPLES / "bench-5node.yaml")
    decided = _triggers(6)  # by the classic layout, as far as the log's offsets say
    await asyncio.to_thread(_publish, s, decided)
    ends = await _commit_as_the_orchestrator(s)
    assert sum(ends.values()) == 6

    worker = Worker(s, ["all"])
    await worker.start()
    engine = Engine(s, worker)
    try:
        # new executions on every partition an old trigger is on: once they have ended, the
        # processor has read past the old triggers' offsets on each of those partitions
        wanted = {kafka.partition_of(t.execution_id, s.default_partitions) for t in decided}
        fresh: list[TriggerReceived] = []
        while wanted - {kafka.partition_of(t.execution_id, s.default_partitions)
                        for t in fresh}:
            fresh += _triggers(1)
        await asyncio.to_thread(_publish, s, fresh)
        for t in fresh:
            events = await engine.wait(t.execution_id)
            assert events[-1]["event_type"] == "ExecutionSucceeded"
    finally:
        await worker.stop()
    for t in decided:
        assert await tools.collect(s, t.execution_id) == [], (
            f"{t.execution_id} was decided again: the processor did not start at the "
            "orchestrator group's offsets")
