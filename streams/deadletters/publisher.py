"""Execution-events → RabbitMQ: every `NodeDeadLettered` becomes a persistent dead letter
on the dead-letter exchange, confirmed by the broker before the Kafka offset moves.

The outbox is the uncommitted offset: records are folded, their dead letters published
with publisher confirms, and only then is the offset committed. RabbitMQ down: the
publisher retries (with backoff) the same dead letters and reads nothing further, so
nothing is lost; a crash re-reads from the committed offset and publishes the same
message ids again (consumers deduplicate on them). On assignment a partition is re-read
from its beginning to rebuild what the dead letters need (inputs, rungs), publishing only
from the committed offset on, as the dispatcher does.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import aio_pika
from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from flowlog.aggregates.execution.taskconfig import render_task_config
from flowlog.schemas.codec import Codec
from flowlog.streams.deadletters import topology
from flowlog.streams.deadletters.fold import PartitionFold
from flowlog.streams.deadletters.message import (
    DELAY,
    DeadLetter,
    ladder_for,
    route,
    routing_key,
)
from flowlog.streams.deadletters.metrics import PUBLISHED
from flowlog.streams.runtime.kafka import catalog, group_consumer, seek_to_start
from flowlog.streams.runtime.registry import RegistryFollower
from pamqp.commands import Basic

from flowlog.settings import Settings

log = logging.getLogger(__name__)
GROUP = "deadletters"
#: Polls whose dead letters may wait for their confirms at once (the rest waits).
MAX_ROUNDS = 4


def amqp_message(letter: DeadLetter, extra_headers: dict[str, Any] | None = None
                 ) -> aio_pika.Message:
    """The persistent AMQP message of a dead letter (id, timestamp; workflow and node type
    are in the routing key, everything else in the body)."""
    return aio_pika.Message(
        letter.body(), message_id=letter.message_id, content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT, timestamp=letter.dead_lettered_at,
        type="flowlog.DeadLetter", headers=extra_headers)


def properties(letter: DeadLetter, extra_headers: dict[str, Any] | None = None
               ) -> Basic.Properties:
    """The AMQP properties of a dead letter, as `amqp_message` sets them. No headers: their
    table encoding was a quarter of the framing cost, and the body says it all."""
    return Basic.Properties(
        message_id=letter.message_id, content_type="application/json", delivery_mode=2,
        timestamp=letter.dead_lettered_at, message_type="flowlog.DeadLetter",
        headers=extra_headers)


class RabbitSink:
    """Publishes dead letters with confirms; reconnects until they are confirmed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.connection: Any = None
        self.channel: Any = None
        self.topo: topology.Topology | None = None
        self.attempts = 0  # failed publish rounds (tests and logs read it)
        self._opening = asyncio.Lock()

    async def open(self) -> topology.Topology:
        async with self._opening:  # rounds publish concurrently: one connection for all
            if self.topo is None or self.connection is None or self.connection.is_closed:
                await self.close()
                self.connection = await topology.connect(self.settings)
                self.channel = await self.connection.channel(publisher_confirms=True,
                                                             on_return_raises=True)
                self.topo = await topology.declare(self.channel, self.settings)
            return self.topo

    async def close(self) -> None:
        conn, self.connection, self.topo = self.connection, None, None
        if conn is not None and not conn.is_closed:
            try:
                await conn.close()
            except Exception:
                log.debug("closing the RabbitMQ connection", exc_info=True)

    def target(self, letter: DeadLetter) -> str:
        s = self.settings
        stage, delay = route(letter, ladder_for(letter.workflow_id, s.deadletter_ladder,
                                                 s.deadletter_ladders))
        return routing_key(stage, letter, delay)

    async def publish_all(self, letters: list[DeadLetter], stop: asyncio.Event | None = None
                          ) -> None:
        """Publish every letter, confirmed, retrying the unconfirmed ones until done (or
        ``stop`` is set: then raises `asyncio.CancelledError`, nothing committed).

        A letter whose confirm was lost with the connection is published again: RabbitMQ
        may then hold it twice, with the same message id (consumers deduplicate)."""
        todo = list(letters)
        delay = 0.2
        while todo:
            problem: BaseException | None = None
            try:
                topo = await self.open()
                raw = await self.channel.get_underlay_channel()
                targets = [self.target(x) for x in todo]
                # aiormq under aio-pika: its Message and exchange wrappers cost more than
                # the publish itself (measured: 1,180/s through them, 2,190/s without)
                # one deadline for the round, not a timeout per publish (that cost
                # 0.27 ms per message, a third of the client's time)
                results = await asyncio.wait_for(asyncio.gather(
                    *(raw.basic_publish(x.body(), exchange=topo.names.exchange,
                                        routing_key=rk, properties=properties(x),
                                        mandatory=True)
                      for x, rk in zip(todo, targets, strict=True)),
                    return_exceptions=True), 60)
                failed = []
                for x, rk, res in zip(todo, targets, results, strict=True):
                    if not isinstance(res, Basic.Ack):
                        failed.append(x)
                        problem = problem or (res if isinstance(res, BaseException)
                                              else RuntimeError(f"broker answered {res!r}"))
                    else:
                        PUBLISHED.labels(rk.split(".", 1)[0]).inc()
                todo = failed
            except Exception as exc:  # connect or declare failed: RabbitMQ is away
                problem = exc
            if not todo:
                return
            self.attempts += 1
            log.warning("deadletters: RabbitMQ publish failed (%r); %d dead letters wait "
                        "(offsets not committed); retry in %.1fs", problem, len(todo), delay)
            await self.close()
            if stop is not None and stop.is_set():
                raise asyncio.CancelledError("stopped while RabbitMQ was away")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, owner: Publisher) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.owner.drain()  # confirmed and committed before the partitions go
        for tp in revoked:
            self.owner.parts.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        o = self.owner
        for tp in assigned:
            committed = await o.consumer.committed(tp)
            o.parts[tp.partition] = PartitionFold(render=o.render)
            o.resume_at[tp.partition] = committed or 0
        await seek_to_start(o.consumer, list(assigned))
        log.info("deadletters publisher: assigned %s", sorted(tp.partition for tp in assigned))


class Publisher:
    """The consumer group `<prefix>deadletters` over execution-events."""

    def __init__(self, settings: Settings, follower: RegistryFollower | None,
                 sink: RabbitSink | None = None, codec: Codec | None = None) -> None:
        self.settings = settings
        self.follower = follower
        self.sink = sink or RabbitSink(settings)
        self.codec = codec or Codec.from_settings(settings)
        self.topic = catalog(settings).name("execution-events")
        self.consumer = group_consumer(settings, GROUP, [self.topic],
                                       max_poll_interval_ms=3_600_000)
        self.parts: dict[int, PartitionFold] = {}
        # the next offset to publish from, per partition (records before it were published)
        self.resume_at: dict[int, int] = {}
        self.published = 0
        #: publish rounds (one per poll) in flight, oldest first, with the offsets to commit
        self.inflight: deque[tuple[asyncio.Task[None] | None,
                                   dict[TopicPartition, int]]] = deque()

    def render(self, workflow_id: str, version: int, node_id: str, node_input: Any,
               item: Any, execution_id: str) -> Any:
        """The task's config as the executor got it (secrets as references), or None."""
        if self.follower is None:
            return None
        definition = self.follower.registry.definition(workflow_id, version)
        if definition is None:
            return None
        try:
            return render_task_config(
                definition, node_id,
                node_input if isinstance(node_input, dict) else {"value": node_input},
                execution_id=execution_id, item=item)
        except Exception as exc:  # the task could not be rendered then either
            return {"error": f"{type(exc).__name__}: {exc}"}

    async def run(self, stop: asyncio.Event) -> None:
        self.consumer.subscribe([self.topic], listener=_Listener(self))
        await self.consumer.start()
        try:
            while not stop.is_set():
                batches = await self.consumer.getmany(
                    timeout_ms=200, max_records=4 * self.settings.deadletter_batch)
                if batches:
                    await self.handle(batches, stop)
                elif self.inflight:
                    await self._settle(block=False)
        finally:
            try:
                await asyncio.wait_for(self.drain(), 15)
            except (asyncio.CancelledError, Exception):  # stopped while RabbitMQ was away
                log.info("deadletters: stopped with unconfirmed dead letters; their offsets "
                         "stay uncommitted and the next publisher re-reads them")
            await self.consumer.stop()
            await self.sink.close()

    async def handle(self, batches: dict[TopicPartition, list[Any]],
                     stop: asyncio.Event | None = None) -> None:
        """Fold a poll, publish its dead letters (up to `MAX_ROUNDS` polls' worth in flight)
        and commit the offsets of every poll whose dead letters, and all before them, are
        confirmed: the uncommitted offset is the outbox."""
        letters: list[DeadLetter] = []
        offsets: dict[TopicPartition, int] = {}
        for tp, msgs in batches.items():
            fold = self.parts.get(tp.partition)
            if fold is None:
                continue
            emit_from = self.resume_at.get(tp.partition, 0)
            for msg in msgs:
                try:
                    events = self.codec.decode(msg.value).record["events"]
                except Exception:  # the orchestrator's guard quarantines it; skip here
                    log.exception("deadletters: unreadable execution-events record %s@%s",
                                  tp, msg.offset)
                    continue
                letters += fold.apply(events, emit=msg.offset >= emit_from)
            last = msgs[-1].offset + 1
            if last > emit_from:
                offsets[tp] = last
                self.resume_at[tp.partition] = last
        task = asyncio.create_task(self._publish(letters, stop)) if letters else None
        self.inflight.append((task, offsets))
        await self._settle(block=len(self.inflight) >= MAX_ROUNDS)

    async def _publish(self, letters: list[DeadLetter], stop: asyncio.Event | None) -> None:
        await self.sink.publish_all(letters, stop)
        self.published += len(letters)

    async def _settle(self, block: bool) -> None:
        """Commit the offsets of the oldest rounds whose dead letters are all confirmed."""
        if block and self.inflight and self.inflight[0][0] is not None:
            await asyncio.wait([self.inflight[0][0]])
        merged: dict[TopicPartition, int] = {}
        while self.inflight:
            task, offsets = self.inflight[0]
            if task is not None and not task.done():
                break
            self.inflight.popleft()
            if task is not None:
                task.result()  # CancelledError: stopped while RabbitMQ was away
            merged.update(offsets)
        if merged:
            try:
                await self.consumer.commit(merged)
            except (CommitFailedError, KafkaError) as exc:  # re-read later: same message ids
                log.warning("deadletters: commit failed (%s); the records will be re-read", exc)

    async def drain(self) -> None:
        """Wait for every round in flight and commit behind it."""
        while self.inflight:
            await self._settle(block=True)


__all__ = ["DELAY", "GROUP", "Publisher", "RabbitSink", "amqp_message"]
