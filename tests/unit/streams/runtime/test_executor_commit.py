"""The executor's commit goes through `commits.commit_offsets`, as the `Committer`'s does:
a commit that fails for any Kafka reason (a rebalance, the coordinator moving, a dropped
connection, a timeout) does not end the role, and the same offsets are committed again with
the next commit."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    NodeNotReadyError,
    NotCoordinatorForGroupError,
    RequestTimedOutError,
    UnknownMemberIdError,
)
from flowlog.streams.runtime.commits import Committer, commit_offsets
from flowlog.streams.runtime.executor import Executor, _Partition

from flowlog.settings import Settings

pytestmark = pytest.mark.unit


class FlakyConsumer:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.commits: list[dict[int, int]] = []

    async def commit(self, offsets: dict[Any, Any]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.commits.append({tp.partition: o.offset for tp, o in offsets.items()})


    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("unit.node-tasks", 0)}


def _executor(consumer: FlakyConsumer) -> Executor:
    guard: Any = SimpleNamespace(codec=None)
    ex = Executor(Settings(topic_prefix="unit."), producer=None, runner=None,  # type: ignore[arg-type]
                  consumer=consumer, guard=guard)
    part = _Partition()
    part.next = 42
    ex.parts[0] = part
    return ex


ERRORS = [KafkaConnectionError("down"), CommitFailedError("rebalanced"),
          IllegalStateError("not assigned"), NodeNotReadyError("coordinator"),
          NotCoordinatorForGroupError("moved"), RequestTimedOutError("slow"),
          UnknownMemberIdError("expired"), KafkaError("anything else")]


@pytest.mark.parametrize("error", ERRORS)
async def test_a_failed_commit_is_retried_not_fatal(error: Exception) -> None:
    consumer = FlakyConsumer([error])
    ex = _executor(consumer)
    tp = TopicPartition(ex.tasks_topic, 0)
    await ex.commit([tp], force=True)  # fails, and says so in the log only
    assert consumer.commits == [] and ex.parts[0].committed is None
    await ex.commit([tp], force=True)  # the same offset again
    assert consumer.commits == [{0: 42}] and ex.parts[0].committed == 42
    await ex.commit([tp], force=True)  # nothing new: no round trip
    assert consumer.commits == [{0: 42}]


@pytest.mark.parametrize(("error", "outcome"), [
    (None, "committed"),
    (CommitFailedError("rebalanced"), "lost"),
    (IllegalStateError("not assigned"), "lost"),
    (KafkaConnectionError("down"), "not_made"),
    (NodeNotReadyError("coordinator"), "not_made"),
    (NotCoordinatorForGroupError("moved"), "not_made"),
    (RequestTimedOutError("slow"), "not_made"),
    (KafkaError("anything else"), "not_made"),
])
async def test_commit_offsets_says_what_a_failure_means(error: Exception | None,
                                                        outcome: str) -> None:
    consumer = FlakyConsumer([error] if error is not None else [])
    tp = TopicPartition("unit.node-tasks", 0)
    assert await commit_offsets(consumer, {tp: 5}, "t") == outcome
    assert consumer.commits == ([{0: 5}] if outcome == "committed" else [])


async def test_a_non_kafka_error_is_not_swallowed() -> None:
    """A bug (not a Kafka error) ends the role in both, the same way."""
    tp = TopicPartition("unit.node-tasks", 0)
    with pytest.raises(TypeError):
        await commit_offsets(FlakyConsumer([TypeError("bug")]), {tp: 5}, "t")
    ex = _executor(FlakyConsumer([TypeError("bug")]))
    with pytest.raises(TypeError):
        await ex.commit([tp], force=True)


@pytest.mark.parametrize("error", ERRORS)
async def test_the_committer_goes_on_after_the_same_errors(error: Exception) -> None:
    consumer = FlakyConsumer([error])
    lost: list[set[TopicPartition]] = []
    c = Committer(consumer, "t", interval_s=0, on_commit_failed=lost.append)
    c.start()
    tp = TopicPartition("unit.node-tasks", 0)
    await c.add([], {tp: 3})
    await c.flush()
    await c.add([], {tp: 4})
    await c.flush()
    assert consumer.commits == [{0: 4}]  # the role went on; the next commit was made
    assert lost == ([{tp}] if isinstance(error, (CommitFailedError, IllegalStateError)) else [])
    await c.stop()
