"""Kafka plumbing of the read side (aiokafka): a projector's group consumer, reading a
range of a partition, end offsets. Projections never import `flowlog.streams`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from flowlog.schemas.topics import TopicCatalog

from flowlog.settings import Settings


def topic_name(settings: Settings, logical: str) -> str:
    return TopicCatalog.from_settings(settings).name(logical)


def group_consumer(settings: Settings, group: str, topics: list[str]) -> AIOKafkaConsumer:
    """A group member with manual offsets (the projector keeps them in PostgreSQL; the
    group's own commits are never made, so only the assignment comes from the group).

    Like the engine's consumers it reads committed records only
    (``FLOWLOG_KAFKA_ISOLATION_LEVEL``, default read_committed): the processor role writes
    execution-events in transactions, and one it aborted (a fenced owner's) must never be
    projected. Records written without a transaction are visible as before."""
    return AIOKafkaConsumer(
        *topics, bootstrap_servers=settings.bootstrap_servers,
        isolation_level=settings.kafka_isolation_level,
        group_id=settings.topic_prefix + group, enable_auto_commit=False,
        auto_offset_reset="earliest", partition_assignment_strategy=(RangePartitionAssignor,),
        max_poll_records=settings.projector_batch_records,
        session_timeout_ms=settings.consumer_session_timeout_ms, heartbeat_interval_ms=2_000,
        rebalance_timeout_ms=60_000, max_partition_fetch_bytes=8 * 1024 * 1024)


def plain_consumer(settings: Settings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                            isolation_level=settings.kafka_isolation_level,
                            enable_auto_commit=False, auto_offset_reset="earliest",
                            max_partition_fetch_bytes=8 * 1024 * 1024)


async def partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(parts)]


async def read_range(consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int,
                     max_records: int = 5000) -> AsyncIterator[list[Any]]:
    """Batches of the records of ``tp`` in [start, end), on an assigned plain consumer."""
    if start >= end:
        return
    consumer.seek(tp, start)
    position = start
    while position < end:
        got = await consumer.getmany(tp, timeout_ms=1000, max_records=max_records)
        msgs = [m for m in got.get(tp, ()) if m.offset < end]
        if msgs:
            position = msgs[-1].offset + 1
            yield msgs
        elif await consumer.position(tp) >= end:
            return


async def end_offsets(settings: Settings, topics: list[str]) -> dict[TopicPartition, int]:
    consumer = plain_consumer(settings)
    await consumer.start()
    try:
        tps = [tp for t in topics for tp in await partitions(consumer, t)]
        return dict(await consumer.end_offsets(tps)) if tps else {}
    finally:
        await consumer.stop()
