"""Event triggers (``flowlog worker events``): outside topics → ``TriggerReceived``.

One consumer group (``<prefix>event-router``) reads every topic an active event trigger
names. Each record is decoded (JSON, or Avro in flowlog's or Confluent's framing), run
through each trigger's CEL ``filter``, mapped by its ``input`` expression (default: the
record itself) and published; then the offsets are committed (at least once). The dedup
key defaults to ``event:<topic>:<partition>:<offset>``, so a record read again after a
crash names the same execution: a restart fires nothing twice. A record that does not
decode, or whose expressions fail, is counted and skipped, never fatal; one that does not
match is counted.

Raw aiokafka, not Faust: measured on this machine (``benchmarks/bench_event_router.py``,
docs/ingress.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from flowlog.aggregates.definition.trigger_checks import parse_instant
from flowlog.aggregates.errors import ExpressionError
from flowlog.aggregates.expressions import Expression, compile_expression
from flowlog.schemas.codec import Codec
from flowlog.schemas.events import TriggerReceived
from flowlog.schemas.sdk import EventProducer
from flowlog.streams.triggers.definitions import TrackingRegistry

from flowlog.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EventTrigger:
    workflow_id: str
    workflow_version: int
    trigger_index: int
    tenant: str
    topic: str
    format: str
    filter: Expression | None
    input: Expression | None
    dedup: Expression | None
    start: Any

    @classmethod
    def from_config(cls, workflow_id: str, version: int, index: int, tenant: str,
                    config: dict[str, Any]) -> EventTrigger:
        def expr(key: str) -> Expression | None:
            return compile_expression(config[key]) if config.get(key) else None

        return cls(workflow_id, version, index, tenant,
                   str(config.get("topic") or config["event"]), config.get("format") or "json",
                   expr("filter"), expr("input"), expr("dedup"), config.get("start", "latest"))

    def route(self, variables: dict[str, Any]) -> TriggerReceived | None:
        """The trigger a decoded record fires, or None when the filter says no.
        Raises ``ExpressionError`` when an expression fails on this record."""
        if self.filter is not None and self.filter.evaluate(variables) is not True:
            return None
        if self.input is not None:
            value = self.input.evaluate(variables)
            if not isinstance(value, dict):
                raise ExpressionError(self.input.source, "the input must be a map")
        else:
            event = variables["event"]
            value = event if isinstance(event, dict) else {"event": event}
        dedup = (f"event:{self.dedup.evaluate(variables)}" if self.dedup is not None else
                 f"event:{variables['topic']}:{variables['partition']}:{variables['offset']}")
        return TriggerReceived(workflow_id=self.workflow_id, source="event", input=value,
                               workflow_version=self.workflow_version, dedup_key=dedup,
                               tenant=self.tenant)


def event_triggers(registry: TrackingRegistry) -> list[EventTrigger]:
    out = []
    for wid in sorted(registry.workflows):
        version, triggers = registry.active_triggers(wid, "event")
        tenant = registry.tenants.get(wid, "default")
        out += [EventTrigger.from_config(wid, version, i, tenant, cfg) for i, cfg in triggers]
    return out


class _StartPositions(ConsumerRebalanceListener):
    """Where a partition the group has never committed starts: the trigger's ``start``."""

    def __init__(self, router: EventRouter) -> None:
        self.router = router

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        consumer = self.router.consumer
        assert consumer is not None
        for tp in assigned:
            if await consumer.committed(tp) is not None:
                continue
            start = self.router.start_of(tp.topic)
            if start == "earliest":
                await consumer.seek_to_beginning(tp)
            elif isinstance(start, int) and not isinstance(start, bool):
                consumer.seek(tp, start)
            elif isinstance(parse_instant(start), datetime):
                at = parse_instant(start)
                assert isinstance(at, datetime)
                found = await consumer.offsets_for_times({tp: int(at.timestamp() * 1000)})
                if found.get(tp) is not None:
                    consumer.seek(tp, found[tp].offset)
                else:
                    await consumer.seek_to_end(tp)
            else:
                await consumer.seek_to_end(tp)


class EventRouter:
    def __init__(self, settings: Settings, producer: EventProducer | None = None) -> None:
        self.settings = settings
        self.codec = Codec.from_settings(settings)
        self.producer = producer
        self.consumer: AIOKafkaConsumer | None = None
        self.by_topic: dict[str, list[EventTrigger]] = {}
        self.counts: Counter[str] = Counter()
        self.group = f"{settings.topic_prefix}event-router"

    def start_of(self, topic: str) -> Any:
        triggers = self.by_topic.get(topic) or []
        return triggers[0].start if triggers else "latest"

    async def start(self, triggers: list[EventTrigger]) -> None:
        if self.producer is None:
            self.producer = EventProducer.from_settings(self.settings, **{"linger.ms": 5})
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_servers, group_id=self.group,
            enable_auto_commit=False, auto_offset_reset="latest",
            max_poll_records=self.settings.max_poll_records * 4)
        await self.consumer.start()
        self.set_triggers(triggers)

    def set_triggers(self, triggers: list[EventTrigger]) -> None:
        by_topic: dict[str, list[EventTrigger]] = {}
        for t in triggers:
            by_topic.setdefault(t.topic, []).append(t)
        changed = set(by_topic) != set(self.by_topic)
        self.by_topic = by_topic
        if changed and self.consumer is not None:
            if by_topic:
                self.consumer.subscribe(sorted(by_topic), listener=_StartPositions(self))
            else:
                self.consumer.unsubscribe()

    def decode(self, trigger_format: str, value: bytes | None) -> Any:
        if value is None:
            return None
        if trigger_format == "avro":
            return self.codec.decode(value).record
        return orjson.loads(value)

    def route(self, msg: Any) -> list[TriggerReceived]:
        """The triggers one record fires (counted; never raises)."""
        self.counts["records"] += 1
        out = []
        decoded: dict[str, Any] = {}
        for trigger in self.by_topic.get(msg.topic, ()):
            try:
                if trigger.format not in decoded:
                    decoded[trigger.format] = self.decode(trigger.format, msg.value)
            except Exception:
                self.counts["undecodable"] += 1
                continue
            variables = {
                "event": decoded[trigger.format], "topic": msg.topic,
                "partition": msg.partition, "offset": msg.offset, "timestamp": msg.timestamp,
                "key": msg.key.decode("utf-8", "replace") if msg.key else None,
                "headers": {k: v.decode("utf-8", "replace") for k, v in msg.headers or ()}}
            try:
                fired = trigger.route(variables)
            except Exception:  # an expression failed on this record
                self.counts["failed"] += 1
                continue
            if fired is None:
                self.counts["unmatched"] += 1
            else:
                self.counts["matched"] += 1
                out.append(fired)
        return out

    async def poll_once(self, timeout_ms: int = 500) -> int:
        """Read one batch, publish what it fires, commit; returns records read."""
        assert self.consumer is not None and self.producer is not None
        if not self.by_topic:
            await asyncio.sleep(timeout_ms / 1000)
            return 0
        batches = await self.consumer.getmany(timeout_ms=timeout_ms)
        fired: list[TriggerReceived] = []
        offsets: dict[TopicPartition, int] = {}
        n = 0
        for tp, msgs in batches.items():
            for msg in msgs:
                fired += self.route(msg)
                n += 1
            if msgs:
                offsets[tp] = msgs[-1].offset + 1
        if fired:
            summary = await asyncio.to_thread(self.producer.publish_many, fired)
            if not summary.ok:
                raise RuntimeError(f"publishing {len(fired)} triggers failed: {summary}")
            self.counts["published"] += len(fired)
        if offsets:
            await self.consumer.commit(offsets)
        return n

    async def lag(self) -> int | None:
        """Records behind the end of the assigned partitions (None: none assigned yet)."""
        assert self.consumer is not None
        tps = list(self.consumer.assignment())
        if not tps:
            return None
        ends = await self.consumer.end_offsets(tps)
        behind = 0
        for tp in tps:
            behind += max(0, ends[tp] - await self.consumer.position(tp))
        return behind

    async def rewind(self) -> None:
        """Back to the committed offsets (after a failed batch: it is read again)."""
        assert self.consumer is not None
        for tp in self.consumer.assignment():
            committed = await self.consumer.committed(tp)
            if committed is not None:
                self.consumer.seek(tp, committed)

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.producer is not None:
            await asyncio.to_thread(self.producer.close, 10.0)


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """``flowlog worker events``: follow definitions, route records until ``stop``."""
    from flowlog.streams.runtime.registry import RegistryFollower

    registry = TrackingRegistry()
    follower = RegistryFollower(settings, registry)
    await follower.start()
    router = EventRouter(settings)
    await router.start(event_triggers(registry))
    registry.take_dirty()
    try:
        while not stop.is_set():
            if registry.take_dirty():
                router.set_triggers(event_triggers(registry))
            try:
                await router.poll_once()
            except Exception:
                log.exception("event router: batch failed; it is read again")
                await router.rewind()
                await asyncio.sleep(1)
    finally:
        await router.stop()
        await follower.stop()
