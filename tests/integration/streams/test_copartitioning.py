"""Co-partitioning: the SDK (confluent-kafka, murmur2_random) and aiokafka/Faust (the
Java murmur2 partitioner) put the same key on the same partition number."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer
from flowlog.schemas.sdk import PRODUCER_DEFAULTS
from flowlog.streams.runtime.tools import partition_of

pytestmark = pytest.mark.integration


def _confluent_partitions(bootstrap: str, topic: str, keys: list[str]) -> dict[str, int]:
    got: dict[str, int] = {}
    producer = Producer({**PRODUCER_DEFAULTS, "bootstrap.servers": bootstrap})

    def delivered(err: object, msg: object) -> None:
        assert err is None, err
        got[msg.key().decode()] = msg.partition()  # type: ignore[attr-defined]

    for key in keys:
        producer.produce(topic, b"x", key.encode(), on_delivery=delivered)
    assert producer.flush(30) == 0
    return got


async def _aiokafka_partitions(bootstrap: str, topic: str, keys: list[str]) -> dict[str, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        metas = await asyncio.gather(*[producer.send_and_wait(topic, b"x", key=k.encode())
                                       for k in keys])
    finally:
        await producer.stop()
    return {k: m.partition for k, m in zip(keys, metas, strict=True)}


async def test_same_key_same_partition_via_sdk_and_aiokafka(
        kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic("copart", partitions=6)
    keys = [str(uuid.uuid4()) for _ in range(300)]
    via_sdk = await asyncio.to_thread(_confluent_partitions, kafka_bootstrap, topic, keys)
    via_aiokafka = await _aiokafka_partitions(kafka_bootstrap, topic, keys)
    assert via_sdk == via_aiokafka
    assert len(set(via_sdk.values())) == 6  # the keys spread over every partition
    assert all(partition_of(k, 6) == p for k, p in via_sdk.items())


def test_faust_uses_the_same_partitioner() -> None:
    """Faust produces through aiokafka's DefaultPartitioner (murmur2)."""
    from aiokafka.partitioner import DefaultPartitioner, murmur2

    keys = [str(uuid.uuid4()).encode() for _ in range(100)]
    parts = list(range(6))
    for key in keys:
        assert DefaultPartitioner()(key, parts, parts) == (murmur2(key) & 0x7FFFFFFF) % 6
