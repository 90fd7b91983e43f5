"""Helpers of the audit integration tests: write histories to execution-events the way the
orchestrator does (one ExecutionEventBatch record per decision), read the log back, run
the projector as a process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from flowlog.aggregates.execution.events import ExecutionEvent
from flowlog.aggregates.records import batch_events, batch_record
from flowlog.schemas.codec import Codec

from flowlog.settings import Settings
from tests.support.histories import HISTORIES, renamed

__all__ = ["HISTORIES", "renamed"]


def decisions(events: list[ExecutionEvent]) -> list[list[ExecutionEvent]]:
    out: list[list[ExecutionEvent]] = []
    for e in events:
        if out and out[-1][0].causation_id == e.causation_id:
            out[-1].append(e)
        else:
            out.append([e])
    return out


def partition_of(execution_id: str, partitions: int) -> int:
    return zlib.crc32(execution_id.encode()) % partitions


def produce(settings: Settings, topic: str, partitions: int,
            executions: list[list[ExecutionEvent]], *, duplicate_every: int = 0,
            garbage: int = 0) -> tuple[int, int]:
    """Interleave the executions' decisions on `topic`; every `duplicate_every`-th record is
    written twice (an orchestrator that re-decided after a crash), plus `garbage` records
    that do not decode. Returns the numbers of records and of garbage records."""
    codec = Codec.from_settings(settings)
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers,
                         "enable.idempotence": True, "linger.ms": 5})
    queues = [decisions(events) for events in executions]
    n = bad = 0
    while any(queues):
        for q in queues:
            if not q:
                continue
            group = q.pop(0)
            eid = group[0].execution_id
            value = codec.encode("ExecutionEventBatch",
                                 batch_record(group, group[0].causation_id))
            copies = 2 if duplicate_every and n % duplicate_every == 0 else 1
            for _ in range(copies):
                producer.produce(topic, key=eid.encode(), value=value,
                                 partition=partition_of(eid, partitions))
                n += 1
            if garbage and n % 97 == 0:
                producer.produce(topic, key=eid.encode(), value=b"\x00not avro",
                                 partition=partition_of(eid, partitions))
                garbage -= 1
                bad += 1
                n += 1
        producer.poll(0)
    assert producer.flush(60) == 0
    return n, bad


def end_offsets(settings: Settings, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "x-ends",
                  "enable.auto.commit": False})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
    finally:
        c.close()


def read_log(settings: Settings, topic: str, partitions: int
             ) -> dict[str, list[ExecutionEvent]]:
    """Each execution's events as the log holds them (duplicates by seq dropped)."""
    codec = Codec.from_settings(settings)
    ends = end_offsets(settings, topic, partitions)
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "x-read",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: dict[str, list[ExecutionEvent]] = {}
    seen = {p: 0 for p in range(partitions)}
    deadline = time.monotonic() + 60
    while any(seen[p] < ends[p] for p in seen) and time.monotonic() < deadline:
        for msg in c.consume(500, timeout=1.0):
            if msg.error():
                continue
            seen[msg.partition()] = msg.offset() + 1
            try:
                record = codec.decode(msg.value()).record
            except Exception:
                continue
            for e in batch_events(record):
                events = out.setdefault(e.execution_id, [])
                if e.seq == len(events) + 1:
                    events.append(e)
    c.close()
    return out


def start_projector(settings: Settings, schema: str, **env: str) -> subprocess.Popen[bytes]:
    full = {**os.environ, "FLOWLOG_TOPIC_PREFIX": settings.topic_prefix,
            "FLOWLOG_PG_SCHEMA": schema, "FLOWLOG_METRICS_ENABLED": "false", **env}
    return subprocess.Popen([sys.executable, "-m", "flowlog.cli", "worker", "audit"],
                            env=full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for(check: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
