"""The Committer: offsets only after the acks of every write before them, at most once per
interval, at once on flush; a failed write ends the role."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition
from flowlog.streams.runtime.commits import Committer

pytestmark = pytest.mark.unit
TP0, TP1 = TopicPartition("in", 0), TopicPartition("in", 1)


class Consumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return {TP0, TP1}

    async def commit(self, offsets: dict[Any, Any]) -> None:
        self.commits.append({tp: o.offset for tp, o in offsets.items()})


def future() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


async def test_an_offset_waits_for_the_acks_of_earlier_batches() -> None:
    consumer = Consumer()
    c = Committer(consumer, "t", interval_s=0)
    c.start()
    first, second = future(), future()
    await c.add([first], {TP0: 5})
    await c.add([second], {TP1: 9})
    second.set_result(None)  # the later batch is acked first: nothing may be committed
    await asyncio.sleep(0.05)
    assert consumer.commits == []
    first.set_result(None)
    await c.flush()
    assert {k: v for d in consumer.commits for k, v in d.items()} == {TP0: 5, TP1: 9}
    await c.stop()


async def test_commits_are_at_most_one_per_interval_and_flush_does_not_wait() -> None:
    consumer = Consumer()
    c = Committer(consumer, "t", interval_s=0.3)
    c.start()
    for offset in range(1, 21):  # 20 acked batches inside one interval
        done = future()
        done.set_result(None)
        await c.add([done], {TP0: offset})
        await asyncio.sleep(0.005)
    assert len(consumer.commits) <= 1  # the first may go at once (no commit before it)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await c.flush()
    assert loop.time() - t0 < 0.2
    assert consumer.commits[-1] == {TP0: 20}
    assert len(consumer.commits) == 2 or consumer.commits == [{TP0: 20}]
    await c.stop()


async def test_a_failed_write_is_never_committed_and_ends_the_role() -> None:
    consumer = Consumer()
    c = Committer(consumer, "t", interval_s=0)
    c.start()
    bad = future()
    await c.add([bad], {TP0: 3})
    bad.set_exception(RuntimeError("broker said no"))
    with pytest.raises(RuntimeError, match="broker said no"):
        await c.flush()
    with pytest.raises(RuntimeError, match="broker said no"):
        await c.add([], {TP0: 4})
    assert consumer.commits == []
    await c.stop()


async def test_the_loop_waits_only_when_too_many_batches_are_unacked() -> None:
    consumer = Consumer()
    c = Committer(consumer, "t", interval_s=0, max_pending=2)
    c.start()
    held = [future() for _ in range(3)]
    await c.add([held[0]], {TP0: 1})
    await c.add([held[1]], {TP0: 2})
    third = asyncio.create_task(c.add([held[2]], {TP0: 3}))
    await asyncio.sleep(0.05)
    assert not third.done()
    held[0].set_result(None)
    await asyncio.wait_for(third, 1)
    for f in held[1:]:
        f.set_result(None)
    await c.stop()
    assert consumer.commits[-1] == {TP0: 3}


async def test_a_failed_commit_is_not_fatal_and_the_next_one_carries_on() -> None:
    from aiokafka.errors import KafkaConnectionError

    class Flaky(Consumer):
        failures = 1

        async def commit(self, offsets: dict[Any, Any]) -> None:
            if self.failures:
                self.failures -= 1
                raise KafkaConnectionError("coordinator went away")
            await super().commit(offsets)

    consumer = Flaky()
    c = Committer(consumer, "t", interval_s=0)
    c.start()
    for offset in (1, 2):
        done = future()
        done.set_result(None)
        await c.add([done], {TP0: offset})
        await c.flush()
    assert consumer.commits == [{TP0: 2}]
    await c.stop()


async def test_flush_waits_for_the_batches_before_it_not_for_those_added_after() -> None:
    """The processor's workers add batches while another partition flushes (a revocation,
    a rebuild): the flush ends once the batches before it are committed."""
    consumer = Consumer()
    c = Committer(consumer, "t", interval_s=10)
    c.start()

    async def acked(offset: int) -> None:
        done = future()
        done.set_result(None)
        await c.add([done], {TP0: offset})
        await asyncio.sleep(0.05)

    await acked(1)  # the first commit goes at once
    await acked(2)  # this one waits for the interval
    assert consumer.commits == [{TP0: 1}]
    flushing = asyncio.ensure_future(c.flush())
    await asyncio.sleep(0)
    later = future()  # added after the flush began, never acknowledged while it runs
    await c.add([later], {TP1: 7})
    await asyncio.wait_for(flushing, 2)
    assert consumer.commits == [{TP0: 1}, {TP0: 2}]
    later.set_result(None)
    await c.flush()
    assert consumer.commits[-1] == {TP1: 7}
    await c.stop()
