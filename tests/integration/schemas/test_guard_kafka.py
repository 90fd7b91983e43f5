"""Bad records on a real topic land in quarantine with their reason; the consumer goes on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Producer
from flowlog.schemas.codec import Codec
from flowlog.schemas.events import EventQuarantined, TriggerReceived, to_model
from flowlog.schemas.guard import DecodeGuard, KafkaQuarantine
from flowlog.schemas.topics import TopicCatalog

from tests.support.kafka_topics import consume

pytestmark = pytest.mark.integration


def test_every_kind_of_bad_record_is_quarantined_and_none_stops_the_consumer(
    kafka_bootstrap: str, catalog: TopicCatalog
) -> None:
    codec = Codec()
    topic = catalog.name("triggers")

    def good(i: int) -> bytes:
        return codec.encode_event(TriggerReceived(
            execution_id="ex-1", workflow_id="w", workflow_version=1, source="event",
            input={"i": i}, occurred_at=datetime(2024, 1, 1, tzinfo=UTC)))

    sequence: list[tuple[str, bytes]] = [
        ("good", good(0)),
        ("UnknownSchemaError", b"\xc3\x01" + b"\xee" * 8 + b"\x00"),
        ("good", good(1)),
        ("TruncatedError", good(2)[:20]),
        ("BadMagicError", b"\x01" + good(3)[1:]),
        ("good", good(4)),
        ("OversizedError", good(5) + b"\x00" * 10_000),
        ("good", good(6)),
    ]
    offsets: list[int] = []
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for _, value in sequence:  # one key: one partition, in order
        producer.produce(topic, value, b"ex-1",
                         on_delivery=lambda err, msg: offsets.append(msg.offset()))
        producer.flush(30)
    partition = consume(kafka_bootstrap, topic, 1)[0].partition()

    guard = DecodeGuard(codec, KafkaQuarantine(kafka_bootstrap, catalog.name("quarantine")),
                        max_bytes=4096)
    accepted: list[Any] = []
    for msg in consume(kafka_bootstrap, topic, len(sequence)):
        result = guard.decode(msg)
        if result is not None:
            accepted.append(result.event)
    guard.flush()
    assert [e.input["i"] for e in accepted] == [0, 1, 4, 6]

    quarantined = consume(kafka_bootstrap, catalog.name("quarantine"), 4)
    assert len(quarantined) == 4
    bad = [(kind, raw, off) for (kind, raw), off in zip(sequence, offsets, strict=True)
           if kind != "good"]
    for msg, (kind, raw, offset) in zip(quarantined, bad, strict=True):
        decoded = codec.decode(msg.value())
        q = to_model(decoded.name, decoded.record)
        assert isinstance(q, EventQuarantined)
        assert q.error_type == kind and q.reason
        assert (q.source_topic, q.source_partition, q.source_offset) == (topic, partition,
                                                                         offset)
        assert q.raw == raw
        assert msg.key() == b"ex-1"
