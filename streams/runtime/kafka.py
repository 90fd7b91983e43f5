"""aiokafka plumbing: every Kafka client of the engine is built here, with the engine's
settings (the composition root, `compose.py`, calls these factories and hands the clients
to the roles), plus topic setup and reading one partition from the beginning up to its end
offset. Client ids name the role (`flowlog-<role>`), so the broker's logs and quotas tell
the roles apart."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.partitioner import DefaultPartitioner
from flowlog.schemas.topics import TopicCatalog, apply_topics

from flowlog.settings import Settings

log = logging.getLogger(__name__)


def catalog(settings: Settings) -> TopicCatalog:
    return TopicCatalog.from_settings(settings)


def ensure_topics(settings: Settings) -> None:
    """Apply the topic catalog (idempotent); drift is logged, not fixed."""
    for change in apply_topics(catalog(settings), settings.bootstrap_servers):
        log.info("topics: %s", change)


def producer(settings: Settings, client_id: str = "flowlog-worker") -> AIOKafkaProducer:
    """Idempotent, acks=all; aiokafka's default partitioner is murmur2 (the Java one), the
    same as the SDK's `murmur2_random`, so keys land on the same partition numbers."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, client_id=client_id, acks="all",
        enable_idempotence=True,
        linger_ms=settings.producer_linger_ms, max_batch_size=1_048_576,
        max_request_size=16 * 1024 * 1024, request_timeout_ms=30_000)


def transactional_producer(settings: Settings, transactional_id: str) -> AIOKafkaProducer:
    """A transactional producer (the processor's, one per input partition: its id fences
    the partition's previous owner when this one calls `init_transactions` at start)."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, client_id=f"flowlog-{transactional_id}",
        acks="all", enable_idempotence=True, transactional_id=transactional_id,
        transaction_timeout_ms=settings.processor_transaction_timeout_ms,
        linger_ms=settings.producer_linger_ms, max_batch_size=1_048_576,
        max_request_size=64 * 1024 * 1024, request_timeout_ms=30_000,
        retry_backoff_ms=10)


def partition_of(execution_id: str, partitions: int) -> int:
    """The partition of an execution id (murmur2, as aiokafka, Java and the SDK do)."""
    ps = list(range(partitions))
    return int(DefaultPartitioner()(execution_id.encode(), ps, ps))


def group_consumer(settings: Settings, group: str, topics: list[str], **kw: Any
                   ) -> AIOKafkaConsumer:
    """A consumer-group member with manual commits.

    The range assignor gives one member the same partition numbers of every subscribed
    topic (they have equal partition counts): that is what co-partitioning needs. aiokafka's
    default (round robin over all partitions) would split an execution's inputs.
    Reads committed records only (`FLOWLOG_KAFKA_ISOLATION_LEVEL`): a transaction the
    processor aborted (a fenced zombie's) is never seen; non-transactional records are
    visible as before (their last stable offset is the high watermark).
    """
    kw.setdefault("isolation_level", settings.kafka_isolation_level)
    kw.setdefault("client_id", f"flowlog-{group}")
    kw.setdefault("fetch_min_bytes", settings.consumer_fetch_min_bytes)
    kw.setdefault("fetch_max_wait_ms", settings.consumer_fetch_max_wait_ms)
    return AIOKafkaConsumer(
        *topics, bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.topic_prefix + group, enable_auto_commit=False,
        auto_offset_reset="earliest", partition_assignment_strategy=(RangePartitionAssignor,),
        max_poll_records=settings.max_poll_records,
        session_timeout_ms=settings.consumer_session_timeout_ms,
        heartbeat_interval_ms=2_000, rebalance_timeout_ms=60_000,
        max_partition_fetch_bytes=4 * 1024 * 1024, **kw)


def free_consumer(settings: Settings, **kw: Any) -> AIOKafkaConsumer:
    """A consumer outside any group (assigned partitions, nothing committed): for reading a
    partition whole (a rebuild, the definitions, a snapshot). ``kw``: aiokafka options."""
    kw.setdefault("client_id", "flowlog-reader")
    return AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None, **kw)


async def seek_to_start(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
    """Position every partition at its first stored offset, now.

    Not `seek_to_beginning`: that only requests a reset, which can race with the reset an
    assignment starts by itself (a fresh consumer may then sit at the end offset).
    """
    if not tps:
        return
    begins = await consumer.beginning_offsets(tps)
    for tp in tps:
        consumer.seek(tp, begins[tp])


async def group_offsets(settings: Settings, group: str, tps: list[TopicPartition]
                        ) -> dict[TopicPartition, int]:
    """The offsets consumer group ``group`` (prefixed) committed for ``tps``: those it has
    (a partition it never committed, or a group that does not exist, is left out)."""
    from aiokafka.admin import AIOKafkaAdminClient

    if not tps:
        return {}
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                                client_id="flowlog-offsets")
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(settings.topic_prefix + group,
                                                        partitions=tps)
    finally:
        await admin.close()
    return {tp: o.offset for tp, o in found.items() if o is not None and o.offset >= 0}


async def read_partition(settings: Settings, topic: str, partition: int,
                         until: int | None = None, start: int | None = None
                         ) -> AsyncIterator[Any]:
    """Every committed record of one partition from ``start`` (default: the beginning) up
    to ``until`` (default: the end offset when called). Uses its own group-less consumer."""
    tp = TopicPartition(topic, partition)
    consumer = free_consumer(settings, enable_auto_commit=False, auto_offset_reset="earliest",
                             isolation_level=settings.kafka_isolation_level,
                             max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    try:
        consumer.assign([tp])
        end = until if until is not None else (await consumer.end_offsets([tp]))[tp]
        begin = (await consumer.beginning_offsets([tp]))[tp]
        if start is not None:
            begin = max(begin, start)
        if end <= begin:
            return
        consumer.seek(tp, begin)
        # the position, not the last record's offset + 1: transaction markers and aborted
        # records take offsets that a read_committed consumer never returns
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
            for msg in batch.get(tp, ()):
                if msg.offset >= end:
                    return
                yield msg
    finally:
        await consumer.stop()


async def end_offset(settings: Settings, topic: str, partition: int) -> int:
    consumer = free_consumer(settings)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def cancel_quietly(task: asyncio.Task[Any] | None) -> None:
    if task is None:
        return
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass
