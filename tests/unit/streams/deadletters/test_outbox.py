"""The publisher's outbox: an offset is committed only once the dead letters of its poll
and of every poll before it are confirmed, whatever order the confirms come in."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from flowlog.aggregates import records
from flowlog.aggregates.execution import events as dev
from flowlog.schemas.codec import Codec
from flowlog.streams.deadletters.fold import PartitionFold
from flowlog.streams.deadletters.publisher import Publisher

from flowlog.settings import Settings

pytestmark = pytest.mark.unit
TP = TopicPartition("t.execution-events", 0)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _record(codec: Codec, execution_id: str) -> bytes:
    env = {"occurred_at": NOW, "execution_id": execution_id, "workflow_id": "wf",
           "workflow_version": 1, "correlation_id": None, "causation_id": "c",
           "tenant": "default"}
    err = {"type": "E", "message": "m", "retryable": True}
    evs = [dev.ExecutionStarted(event_id=records.execution_event_id(execution_id, 1), seq=1,
                                input={}, trigger_source="manual", dedup_key=None, **env),
           dev.NodeDeadLettered(event_id=records.execution_event_id(execution_id, 2), seq=2,
                                node_id="n", attempt=1, error=err, **env)]
    return codec.encode("ExecutionEventBatch", records.batch_record(evs, "c"))


class _Sink:
    """Confirms each round when the test says so."""

    def __init__(self) -> None:
        self.gates: list[asyncio.Event] = []
        self.rounds: list[list[str]] = []

    async def publish_all(self, letters: list[Any], stop: Any = None) -> None:
        gate = asyncio.Event()
        self.gates.append(gate)
        self.rounds.append([x.execution_id for x in letters])
        await gate.wait()


class _Consumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


async def test_offsets_commit_in_order_after_the_confirms() -> None:
    settings = Settings(topic_prefix="t.")
    codec = Codec.from_settings(settings)
    sink = _Sink()
    pub = Publisher(settings, None, sink=sink)  # type: ignore[arg-type]
    pub.consumer = _Consumer()  # type: ignore[assignment]
    pub.parts, pub.resume_at = {0: PartitionFold()}, {0: 0}

    def poll(offset: int, execution_id: str) -> dict[TopicPartition, list[Any]]:
        return {TP: [SimpleNamespace(offset=offset, value=_record(codec, execution_id))]}

    await pub.handle(poll(0, "a"))
    await pub.handle(poll(1, "b"))
    await pub.handle(poll(2, "c"))
    await asyncio.sleep(0)  # let the rounds start
    assert sink.rounds == [["a"], ["b"], ["c"]] and pub.consumer.commits == []
    sink.gates[1].set()  # b confirmed first: nothing may be committed past a
    await pub._settle(block=False)
    await asyncio.sleep(0)
    await pub._settle(block=False)
    assert pub.consumer.commits == []
    sink.gates[0].set()
    await pub._settle(block=True)
    assert pub.consumer.commits == [{TP: 2}]  # a and b, not c
    sink.gates[2].set()
    await pub.drain()
    assert pub.consumer.commits[-1] == {TP: 3} and pub.published == 3


async def test_records_before_the_committed_offset_are_not_published_again() -> None:
    settings = Settings(topic_prefix="t.")
    codec = Codec.from_settings(settings)
    sink = _Sink()
    pub = Publisher(settings, None, sink=sink)  # type: ignore[arg-type]
    pub.consumer = _Consumer()  # type: ignore[assignment]
    pub.parts, pub.resume_at = {0: PartitionFold()}, {0: 1}  # offset 0 was published
    await pub.handle({TP: [SimpleNamespace(offset=0, value=_record(codec, "old")),
                           SimpleNamespace(offset=1, value=_record(codec, "new"))]})
    await asyncio.sleep(0)
    assert sink.rounds == [["new"]]
    sink.gates[0].set()
    await pub.drain()
    assert pub.consumer.commits == [{TP: 2}]
