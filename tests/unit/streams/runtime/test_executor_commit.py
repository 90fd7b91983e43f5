"""The executor's commit: a commit that fails for a connection or coordinator reason does
not end the role, and the same offsets are committed again with the next commit."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaConnectionError
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


def _executor(consumer: FlakyConsumer) -> Executor:
    ex = Executor(Settings(topic_prefix="unit."), producer=None, runner=None)  # type: ignore[arg-type]
    ex.consumer = consumer
    part = _Partition()
    part.next = 42
    ex.parts[0] = part
    return ex


@pytest.mark.parametrize("error", [KafkaConnectionError("down"),
                                   CommitFailedError("rebalanced")])
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
