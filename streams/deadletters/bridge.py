"""The bridge: dead letters whose delay is over (the due queue) → `RetryNodeRequested` on
Kafka; and `run`, the `flowlog worker deadletters` process (publisher + bridge + metrics).

A batch of due messages (up to ``deadletter_batch``; prefetch 3 batches) is read, each parsed:
a malformed one is published to the parking queue with the reason (confirmed) and never
retried; the others become retry commands whose event ids derive from their message ids.
Only once Kafka acknowledged the commands are the messages acknowledged. A crash (kill -9)
before that redelivers them: the same commands again, which the orchestrator already
applied (it remembers applied input ids), so none is applied twice. Duplicates of one
message id (a re-published dead letter) make the same command too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
from typing import Any

import aio_pika
from aiormq.abc import DeliveredMessage
from flowlog.streams.deadletters import metrics, topology
from flowlog.streams.deadletters.commands import LADDER, CommandWriter, retry_record
from flowlog.streams.deadletters.message import (
    H_BY,
    H_REASON,
    PARKED,
    MalformedDeadLetter,
    ladder_for,
    parse,
)
from flowlog.streams.deadletters.publisher import Publisher
from flowlog.streams.deadletters.topology import prefix
from flowlog.streams.runtime.kafka import ensure_topics, producer
from flowlog.streams.runtime.registry import RegistryFollower
from pamqp.commands import Basic

from flowlog.settings import Settings

log = logging.getLogger(__name__)
BRIDGE = LADDER  # requested_by of the ladder's retry commands
#: The running publisher and bridge of each dead-letter prefix in this process (tests and
#: benchmarks read their counters).
LIVE: dict[str, tuple[Publisher, Bridge]] = {}


def park_malformed(message: DeliveredMessage, reason: str) -> aio_pika.Message:
    """A copy of an unreadable message for the parking queue, with why it is there."""
    props = message.header.properties
    headers = dict(props.headers or {})
    headers[H_REASON] = reason[:1000]
    headers[H_BY] = BRIDGE
    return aio_pika.Message(
        message.body, message_id=props.message_id, content_type=props.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT, timestamp=props.timestamp,
        headers=headers, type=props.message_type)


class Bridge:
    def __init__(self, settings: Settings, kafka_producer: Any) -> None:
        self.settings = settings
        self.writer = CommandWriter(settings, kafka_producer)
        self.inbox: asyncio.Queue[DeliveredMessage] = asyncio.Queue()
        self.bridged = 0
        self.malformed = 0
        self.batches = 0
        self.crash_after_send = settings.deadletter_fault_crash_after_send

    async def run(self, stop: asyncio.Event) -> None:
        """Consume the due queue until ``stop``; reconnects when RabbitMQ goes away."""
        delay = 0.2
        while not stop.is_set():
            try:
                await self._session(stop)
                delay = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("deadletters bridge: %r; reconnecting in %.1fs", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 5.0)

    async def _session(self, stop: asyncio.Event) -> None:
        connection = await topology.connect(self.settings)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            # two batches delivered ahead: the next is there while this one is sent to Kafka
            await channel.set_qos(prefetch_count=3 * self.settings.deadletter_batch)
            topo = await topology.declare(channel, self.settings)
            self.inbox = asyncio.Queue()
            # aiormq under aio-pika on the hot path: aio-pika's message wrapper per delivery
            # costs more than the rest of the bridge's work
            raw = await channel.get_underlay_channel()
            consumer = await raw.basic_consume(topo.due.name, self.inbox.put, no_ack=False)
            tag = consumer.consumer_tag
            try:
                while not stop.is_set():
                    if connection.is_closed:
                        raise ConnectionError("the RabbitMQ connection closed")
                    try:
                        first = await asyncio.wait_for(self.inbox.get(), 0.2)
                    except TimeoutError:
                        continue
                    batch = [first]
                    while len(batch) < self.settings.deadletter_batch:
                        try:
                            batch.append(self.inbox.get_nowait())
                        except asyncio.QueueEmpty:
                            break
                    await self.handle(batch, topo, raw)
            finally:
                with contextlib.suppress(Exception):
                    await raw.basic_cancel(tag)
        finally:
            with contextlib.suppress(Exception):
                await connection.close()

    async def handle(self, batch: list[DeliveredMessage], topo: topology.Topology,
                     raw: Any) -> None:
        commands = []
        bad: list[tuple[DeliveredMessage, str]] = []
        seen: set[str] = set()
        s = self.settings
        for message in batch:
            try:
                letter = parse(message.body, message.header.properties.message_id)
            except MalformedDeadLetter as exc:
                bad.append((message, f"malformed: {exc}"))
                continue
            if letter.message_id in seen:
                continue  # a duplicate in this batch: the same command, once is enough
            seen.add(letter.message_id)
            n = len(ladder_for(letter.workflow_id, s.deadletter_ladder, s.deadletter_ladders))
            commands.append(("RetryNodeRequested", retry_record(
                letter, requested_by=BRIDGE,
                reason=f"retry ladder: rung {letter.rung + 1} of {n} is over")))
        await self.writer.send_all(commands)  # acknowledged by Kafka before any ack here
        if self.crash_after_send and random.random() < self.crash_after_send:
            os.kill(os.getpid(), signal.SIGKILL)  # fault tests: die between send and ack
        for message, reason in bad:
            await topo.exchange.publish(park_malformed(message, reason),
                                        routing_key=f"{PARKED}.malformed.unknown", timeout=30)
            log.warning("deadletters bridge: parked message %s: %s",
                        message.header.properties.message_id, reason)
        # every earlier delivery of this channel too
        last = batch[-1].delivery
        assert isinstance(last, Basic.Deliver)
        await raw.basic_ack(last.delivery_tag, multiple=True)
        self.bridged += len(commands)
        self.malformed += len(bad)
        self.batches += 1
        metrics.RETRIES.labels("ladder").inc(len(commands))
        metrics.MALFORMED.inc(len(bad))


async def _sample_forever(settings: Settings, stop: asyncio.Event) -> None:
    """Queue depths and the oldest dead letter's age into the gauges, every interval."""
    while not stop.is_set():
        try:
            connection = await topology.connect(settings)
            try:
                channel = await connection.channel()
                topo = await topology.declare(channel, settings)
                while not stop.is_set():
                    await metrics.sample(topo, channel)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), settings.deadletter_depth_interval_s)
            finally:
                with contextlib.suppress(Exception):
                    await connection.close()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("deadletters: sampling queue depths failed (%r)", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.deadletter_depth_interval_s)


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """`flowlog worker deadletters`: publish dead letters to RabbitMQ, bridge due ones back
    to Kafka, sample the queues into the gauges (served on the worker's /metrics by
    `flowlog/observability`); until ``stop`` is set."""
    await asyncio.to_thread(ensure_topics, settings)
    follower = RegistryFollower(settings)
    await follower.start()
    kafka = producer(settings)
    await kafka.start()
    publisher = Publisher(settings, follower)
    bridge = Bridge(settings, kafka)
    LIVE[prefix(settings)] = (publisher, bridge)
    tasks = [asyncio.create_task(publisher.run(stop), name="deadletters-publisher"),
             asyncio.create_task(bridge.run(stop), name="deadletters-bridge"),
             asyncio.create_task(_sample_forever(settings, stop), name="deadletters-metrics")]
    try:
        done, _ = await asyncio.wait([asyncio.create_task(stop.wait()), *tasks],
                                     return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task in tasks:
                task.result()  # a part that ended on its own: raise why
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 15)
        LIVE.pop(prefix(settings), None)
        await kafka.stop()
        await follower.stop()
