"""The producer SDK: typed events in, Kafka out.

    from flowlog.schemas.sdk import EventProducer
    from flowlog.schemas.events import TriggerReceived

    with EventProducer.from_settings(get_settings()) as producer:
        report = producer.publish_sync(TriggerReceived(
            workflow_id="invoice-triage", workflow_version=3, source="webhook",
            input={"invoice": 42}, dedup_key="invoice-42"))

Events are validated (pydantic) at this boundary, encoded by the codec (fastavro, no
validation in the hot path) and produced with confluent-kafka's idempotent producer
(acks=all, compression, batching). Each event goes to its catalog topic, keyed by
``execution_id`` (``workflow_id`` for definitions). ``publish`` returns a future
resolved by the delivery report; ``publish_sync`` waits; ``publish_async`` awaits.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flowlog.schemas.codec import Codec
from flowlog.schemas.errors import EventValidationError, PublishError
from flowlog.schemas.events import ExecutionEventBatch, parse_event
from flowlog.schemas.model import Event
from flowlog.schemas.topics import TopicCatalog
from opentelemetry.propagate import inject

if TYPE_CHECKING:
    from flowlog.settings import Settings

#: Producer settings the contract relies on; callers may add, not weaken, these.
PRODUCER_DEFAULTS: dict[str, Any] = {
    # The Java client's partitioner (murmur2), which aiokafka and Faust use too: a trigger
    # published here lands on the same partition number as its execution's events.
    # librdkafka's default (consistent_random, CRC32) would break co-partitioning.
    "partitioner": "murmur2_random",
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "lz4",
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 1_048_576,
}
EVENT_TYPE_HEADER = "flowlog-event-type"
_Headers = list[tuple[str, str | bytes | None]]


def trace_headers(given: Mapping[str, str | bytes] | None = None) -> _Headers:
    """W3C trace context (``traceparent``, ``tracestate``) of the caller's current
    OpenTelemetry span, unless ``given`` carries one already; empty without a span.

    The engine's roles continue the trace from these headers (flowlog.observability).
    """
    if given and "traceparent" in given:
        return []
    carrier: dict[str, str] = {}
    inject(carrier)
    return [(k, v.encode()) for k, v in carrier.items()]


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """Where the broker stored an event."""

    topic: str
    partition: int
    offset: int
    key: str
    event_id: str | None


def prepare(event: Event | ExecutionEventBatch | Mapping[str, Any]) -> Event | ExecutionEventBatch:
    """Validate a dict (JSON-shaped) into its event type; typed events pass through.

    Raises ``EventValidationError`` naming the field, the value and the fix.
    """
    if isinstance(event, Event | ExecutionEventBatch):
        return event
    return parse_event(dict(event))


@dataclass
class PublishSummary:
    """What ``publish_many`` sent (per topic), refused (index, error) and failed."""

    sent: Counter[str] = field(default_factory=Counter)
    refused: list[tuple[int, EventValidationError]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    undelivered: int = 0

    @property
    def ok(self) -> bool:
        return not (self.refused or self.failed or self.undelivered)


class EventProducer:
    """Publishes contract events to their topics (thread-safe; one per process is enough)."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        catalog: TopicCatalog | None = None,
        codec: Codec | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        from confluent_kafka import Producer

        self.catalog = catalog or TopicCatalog.build()
        self.codec = codec or Codec()
        conf = {**PRODUCER_DEFAULTS, **(config or {}), "bootstrap.servers": bootstrap_servers}
        self._producer = Producer(conf)
        self._topics = {base: spec.name for base, spec in self.catalog.topics.items()}
        self._running = True
        self._poller = threading.Thread(target=self._poll, name="flowlog-producer", daemon=True)
        self._poller.start()

    @classmethod
    def from_settings(cls, settings: Settings, **config: Any) -> EventProducer:
        """A producer for the settings' broker, topic prefix, registry and blob store."""
        return cls(
            settings.bootstrap_servers,
            catalog=TopicCatalog.from_settings(settings),
            codec=Codec.from_settings(settings),
            config=config,
        )

    def _poll(self) -> None:
        while self._running:
            self._producer.poll(0.05)

    # --- publishing -------------------------------------------------------------------------

    def prepare(self, event: Event | ExecutionEventBatch | Mapping[str, Any]
                ) -> Event | ExecutionEventBatch:
        """See ``prepare`` (module level)."""
        return prepare(event)

    def publish(
        self,
        event: Event | ExecutionEventBatch | Mapping[str, Any],
        *,
        headers: Mapping[str, str | bytes] | None = None,
        topic: str | None = None,
    ) -> Future[DeliveryReport]:
        """Queue one event; the future resolves with its ``DeliveryReport``.

        ``headers`` carry W3C trace context (``traceparent``, ``tracestate``) and the like.
        ``topic`` overrides the catalog topic (a full name).
        """
        typed = self.prepare(event)
        name = type(typed).__name__
        value = self.codec.encode(name, typed.to_avro())
        key = typed.key
        target = topic or self._topics[typed.topic]
        hdrs: _Headers = [(EVENT_TYPE_HEADER, name.encode()), *trace_headers(headers)]
        if headers:
            hdrs += [(k, v.encode() if isinstance(v, str) else v) for k, v in headers.items()]
        future: Future[DeliveryReport] = Future()
        event_id = getattr(typed, "event_id", None)

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                future.set_exception(PublishError(
                    f"{name} {event_id} to {target}: {err.str()}", bool(err.retriable())))
            else:
                future.set_result(
                    DeliveryReport(msg.topic(), msg.partition(), msg.offset(), key, event_id))

        while True:
            try:
                self._producer.produce(target, value, key.encode(), headers=hdrs,
                                       on_delivery=delivered)
                return future
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.1)

    def publish_many(
        self,
        events: Iterable[Event | ExecutionEventBatch | Mapping[str, Any]],
        *,
        headers: Mapping[str, str | bytes] | None = None,
        timeout: float = 60.0,
    ) -> PublishSummary:
        """Publish many events and wait for all delivery reports (the bulk path).

        Cheaper per event than ``publish`` (no future per event). Events that fail
        validation are refused, the rest are still sent; the summary says which.
        """
        summary = PublishSummary()

        def delivered(err: Any, msg: Any) -> None:
            if err is None:
                summary.sent[msg.topic()] += 1
            else:
                summary.failed.append(err.str())

        produce, poll = self._producer.produce, self._producer.poll
        extra: _Headers = [*trace_headers(headers), *(
            (k, v.encode() if isinstance(v, str) else v) for k, v in (headers or {}).items())]
        for index, event in enumerate(events):
            try:
                typed = prepare(event)
            except EventValidationError as exc:
                summary.refused.append((index, exc))
                continue
            name = type(typed).__name__
            value = self.codec.encode(name, typed.to_avro())
            hdrs: _Headers = [(EVENT_TYPE_HEADER, name.encode()), *extra]
            while True:
                try:
                    produce(self._topics[typed.topic], value, typed.key.encode(), headers=hdrs,
                            on_delivery=delivered)
                    break
                except BufferError:
                    poll(0.05)
            if index % 1000 == 0:
                poll(0)
        summary.undelivered = int(self._producer.flush(timeout))
        return summary

    def publish_sync(self, event: Event | ExecutionEventBatch | Mapping[str, Any],
                     timeout: float = 30.0, **kwargs: Any) -> DeliveryReport:
        """Publish and wait for the broker's acknowledgement."""
        future = self.publish(event, **kwargs)
        self._producer.flush(timeout)
        return future.result(timeout=timeout)

    async def publish_async(self, event: Event | ExecutionEventBatch | Mapping[str, Any],
                            **kwargs: Any) -> DeliveryReport:
        """Publish from asyncio code; resolves when the broker has acknowledged."""
        return await asyncio.wrap_future(self.publish(event, **kwargs))

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for queued events; returns how many are still undelivered."""
        return int(self._producer.flush(timeout))

    def close(self, timeout: float = 30.0) -> int:
        """Flush and stop the delivery thread; returns undelivered events."""
        left = self.flush(timeout)
        self._running = False
        self._poller.join(timeout=1.0)
        return left

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
