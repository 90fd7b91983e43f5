"""The Kafka client contract the roles rely on, run against both clients over the real broker:
aiokafka (`kafka.group_consumer`, `kafka.producer`) and confluent-kafka behind the same ports
(`rdkafka.group_consumer`, `rdkafka.producer`). See docs/engine.md "Kafka client"."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from flowlog.streams.runtime import kafka, rdkafka
from flowlog.streams.runtime.commits import commit_offsets

from flowlog.settings import Settings

pytestmark = pytest.mark.integration

CLIENTS = ["aiokafka", "confluent"]


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def consumer(client: str, settings: Settings, group: str, topics: list[str]) -> Any:
    s = settings.model_copy(update={"consumer_session_timeout_ms": 6000})
    if client == "aiokafka":
        return kafka.group_consumer(s, group, topics)
    return rdkafka.group_consumer(s, group, topics)


def producer(client: str, settings: Settings) -> Any:
    return kafka.producer(settings) if client == "aiokafka" else rdkafka.producer(settings)


class Recorder(ConsumerRebalanceListener):
    """Records the listener calls (with a monotonic time); ``on_revoke`` runs inside."""

    def __init__(self, on_revoke: Callable[[set[Any]], Any] | None = None) -> None:
        self.calls: list[tuple[str, set[Any], float]] = []
        self.on_revoke = on_revoke
        self.assigned = asyncio.Event()

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.calls.append(("revoke-start", set(revoked), time.monotonic()))
        if self.on_revoke is not None:
            await self.on_revoke(set(revoked))
        self.calls.append(("revoke-end", set(revoked), time.monotonic()))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.calls.append(("assigned", set(assigned), time.monotonic()))
        if assigned:
            self.assigned.set()


async def produce(client: str, settings: Settings, topic: str, n: int, partition: int = 0,
                  headers: list[tuple[str, bytes]] | None = None) -> None:
    p = producer(client, settings)
    await p.start()
    try:
        futs = [await p.send(topic, value=f"v{i}".encode(), key=f"k{i}".encode(),
                             partition=partition, headers=headers) for i in range(n)]
        await asyncio.gather(*futs)
    finally:
        await p.stop()


async def poll_until(c: Any, want: int, within: float = 30.0) -> list[Any]:
    """Poll until ``want`` records came (every record, in order of arrival)."""
    got: list[Any] = []
    deadline = time.monotonic() + within
    while len(got) < want:
        assert time.monotonic() < deadline, f"only {len(got)} of {want} records in {within}s"
        for recs in (await c.getmany(timeout_ms=200)).values():
            got.extend(recs)
    return got


async def test_getmany_shape_and_headers(client: str, settings: Settings,
                                         new_topic: Callable[..., str]) -> None:
    topic = new_topic("shape", partitions=2)
    trace = [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    for p in (0, 1):  # produced by the other client: the wire is the same
        await produce("confluent" if client == "aiokafka" else "aiokafka", settings, topic, 3,
                      partition=p, headers=trace)
    c = consumer(client, settings, "shape", [topic])
    c.subscribe([topic], listener=Recorder())
    await c.start()
    try:
        by_tp: dict[Any, list[Any]] = {}
        deadline = time.monotonic() + 30
        while sum(map(len, by_tp.values())) < 6:
            assert time.monotonic() < deadline
            for tp, recs in (await c.getmany(timeout_ms=200)).items():
                by_tp.setdefault(tp, []).extend(recs)
        assert set(by_tp) == {TopicPartition(topic, 0), TopicPartition(topic, 1)}
        assert all(type(tp) is TopicPartition for tp in by_tp)
        for tp, recs in by_tp.items():
            assert [r.offset for r in recs] == [0, 1, 2]
            for i, r in enumerate(recs):
                assert (r.topic, r.partition) == (tp.topic, tp.partition)
                assert (r.key, r.value) == (f"k{i}".encode(), f"v{i}".encode())
                assert list(r.headers) == trace
                assert isinstance(r.timestamp, int) and r.timestamp > 0
        assert c.assignment() == set(by_tp)
        assert await c.beginning_offsets(list(by_tp)) == {tp: 0 for tp in by_tp}
        assert await c.end_offsets(list(by_tp)) == {tp: 3 for tp in by_tp}
    finally:
        await c.stop()


async def test_headers_round_trip_own_producer(client: str, settings: Settings,
                                               new_topic: Callable[..., str]) -> None:
    topic = new_topic("headers")
    trace = [("traceparent", b"00-aa-bb-01"), ("baggage", b"tenant=t1")]
    await produce(client, settings, topic, 2, headers=trace)
    await produce(client, settings, topic, 1)  # no headers: an empty sequence
    c = consumer(client, settings, "headers", [topic])
    c.subscribe([topic])
    await c.start()
    try:
        recs = await poll_until(c, 3)
        assert [list(r.headers) for r in recs] == [trace, trace, []]
    finally:
        await c.stop()


async def test_commit_then_new_member_resumes(client: str, settings: Settings,
                                              new_topic: Callable[..., str]) -> None:
    topic = new_topic("resume")
    tp = TopicPartition(topic, 0)
    await produce(client, settings, topic, 10)
    a = consumer(client, settings, "resume", [topic])
    a.subscribe([topic])
    await a.start()
    try:
        assert len(await poll_until(a, 10)) == 10
        assert await commit_offsets(a, {tp: 6}, "test") == "committed"
        assert await a.committed(tp) == 6
    finally:
        await a.stop()
    b = consumer(client, settings, "resume", [topic])
    b.subscribe([topic])
    await b.start()
    try:
        assert [r.offset for r in await poll_until(b, 4)] == [6, 7, 8, 9]
    finally:
        await b.stop()


async def test_rebalance_listener_awaited_and_range(client: str, settings: Settings,
                                                    new_topic: Callable[..., str]) -> None:
    """Member A's revocation (a commit, then a slow step) ends before member B is given a
    partition; range: each member holds the same partition numbers of both topics."""
    t1, t2 = new_topic("reb1", partitions=2), new_topic("reb2", partitions=2)
    for p in (0, 1):
        await produce(client, settings, t1, 5, partition=p)
        await produce(client, settings, t2, 5, partition=p)
    a = consumer(client, settings, "reb", [t1, t2])
    read: dict[Any, int] = {}
    outcomes: list[str] = []

    async def commit_what_was_read(revoked: set[Any]) -> None:
        assert revoked <= a.assignment()  # still ours while the listener runs
        mine = {tp: read[tp] for tp in revoked if tp in read}
        if mine:
            outcomes.append(await commit_offsets(a, mine, "test"))
        await asyncio.sleep(1.0)  # a slow revocation: B must not get a partition before its end

    rec_a = Recorder(on_revoke=commit_what_was_read)
    a.subscribe([t1, t2], listener=rec_a)
    await a.start()
    stop = asyncio.Event()

    async def pump(c: Any, seen: dict[Any, int]) -> None:
        while not stop.is_set():
            for tp, recs in (await c.getmany(timeout_ms=100)).items():
                seen[tp] = recs[-1].offset + 1

    b = consumer(client, settings, "reb", [t1, t2])
    rec_b = Recorder()
    pumps = [asyncio.create_task(pump(a, read))]
    try:
        deadline = time.monotonic() + 30
        while sum(read.values()) < 20:
            assert time.monotonic() < deadline, read
            await asyncio.sleep(0.05)
        b.subscribe([t1, t2], listener=rec_b)
        await b.start()
        read_b: dict[Any, int] = {}
        pumps.append(asyncio.create_task(pump(b, read_b)))
        await asyncio.wait_for(rec_b.assigned.wait(), 60)
        while len(a.assignment()) != 2:  # A's re-assignment after its revocation
            assert time.monotonic() < deadline + 60
            await asyncio.sleep(0.05)
        revoke_end = next(t for name, _, t in rec_a.calls if name == "revoke-end")
        b_assigned = next(t for name, tps, t in rec_b.calls if name == "assigned" and tps)
        assert revoke_end < b_assigned, (rec_a.calls, rec_b.calls)
        assert outcomes == ["committed"]
        for member in (a, b):
            parts = member.assignment()
            assert {tp.topic for tp in parts} == {t1, t2}
            assert len({tp.partition for tp in parts}) == 1  # range: same number on both
        assert {tp.partition for tp in a.assignment()} != {tp.partition for tp in b.assignment()}
        # B starts where A committed in its revocation: nothing is read twice
        for tp in b.assignment():
            assert await b.committed(tp) == 5
    finally:
        stop.set()
        await asyncio.gather(*pumps, return_exceptions=True)
        await b.stop()
        await a.stop()


async def test_pause_resume(client: str, settings: Settings,
                            new_topic: Callable[..., str]) -> None:
    topic = new_topic("pause")
    tp = TopicPartition(topic, 0)
    await produce(client, settings, topic, 3)
    c = consumer(client, settings, "pause", [topic])
    c.subscribe([topic])
    await c.start()
    try:
        assert [r.offset for r in await poll_until(c, 3)] == [0, 1, 2]
        c.pause(tp)
        assert c.paused() == {tp}
        await produce(client, settings, topic, 3)
        ends = await c.end_offsets([tp])
        assert ends[tp] == 6  # the records are there ...
        for _ in range(5):  # ... and a paused partition returns none of them
            assert (await c.getmany(timeout_ms=200)).get(tp, []) == []
        c.resume(tp)
        assert c.paused() == set()
        assert [r.offset for r in await poll_until(c, 3)] == [3, 4, 5]
    finally:
        await c.stop()


async def test_seek(client: str, settings: Settings, new_topic: Callable[..., str]) -> None:
    topic = new_topic("seek")
    tp = TopicPartition(topic, 0)
    await produce(client, settings, topic, 5)
    c = consumer(client, settings, "seek", [topic])
    c.subscribe([topic])
    await c.start()
    try:
        assert len(await poll_until(c, 5)) == 5
        c.seek(tp, 1)
        assert [r.offset for r in await poll_until(c, 4)] == [1, 2, 3, 4]
    finally:
        await c.stop()


async def test_seek_in_assignment_listener(client: str, settings: Settings,
                                           new_topic: Callable[..., str]) -> None:
    """The dispatcher's pattern: on assignment, read the committed offset and seek to the
    first offset (`kafka.seek_to_start`): the replay starts there, not at the commit."""
    topic = new_topic("replay")
    tp = TopicPartition(topic, 0)
    await produce(client, settings, topic, 6)
    first = consumer(client, settings, "replay", [topic])
    first.subscribe([topic])
    await first.start()
    try:
        await poll_until(first, 6)
        assert await commit_offsets(first, {tp: 4}, "test") == "committed"
    finally:
        await first.stop()
    c = consumer(client, settings, "replay", [topic])
    committed: list[int | None] = []

    class Replay(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked: Any) -> None:
            pass

        async def on_partitions_assigned(self, assigned: Any) -> None:
            for p in assigned:
                committed.append(await c.committed(p))
            await kafka.seek_to_start(c, list(assigned))

    c.subscribe([topic], listener=Replay())
    await c.start()
    try:
        assert [r.offset for r in await poll_until(c, 6)] == [0, 1, 2, 3, 4, 5]
        assert committed == [4]
    finally:
        await c.stop()


async def test_read_committed_skips_aborted(client: str, settings: Settings,
                                            new_topic: Callable[..., str]) -> None:
    topic = new_topic("txn")
    txn = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers,
                           transactional_id=f"contract-{uuid.uuid4().hex[:8]}")
    await txn.start()
    try:
        await txn.begin_transaction()
        await txn.send_and_wait(topic, b"aborted-1", partition=0)
        await txn.send_and_wait(topic, b"aborted-2", partition=0)
        await txn.abort_transaction()
        async with txn.transaction():
            await txn.send_and_wait(topic, b"committed", partition=0)
    finally:
        await txn.stop()
    await produce(client, settings, topic, 1)  # a plain record after them
    assert settings.kafka_isolation_level == "read_committed"
    c = consumer(client, settings, "txn", [topic])
    c.subscribe([topic])
    await c.start()
    try:
        recs = await poll_until(c, 2)
        assert [r.value for r in recs] == [b"committed", b"v0"]
    finally:
        await c.stop()


async def test_commit_error_is_an_outcome_not_a_crash(client: str, settings: Settings,
                                                      new_topic: Callable[..., str]) -> None:
    """A commit the broker refuses (a partition of a topic that does not exist) comes back
    as `commit_offsets`' "lost" or "not_made", never raised, and the member commits on."""
    topic = new_topic("commit-error")
    tp = TopicPartition(topic, 0)
    await produce(client, settings, topic, 2)
    c = consumer(client, settings, "commit-error", [topic])
    c.subscribe([topic])
    await c.start()
    try:
        await poll_until(c, 2)
        ghost = TopicPartition(f"{topic}-missing", 0)
        assert await commit_offsets(c, {ghost: 1}, "test") in ("lost", "not_made")
        assert await commit_offsets(c, {tp: 2}, "test") == "committed"
        assert await c.committed(tp) == 2
    finally:
        await c.stop()
