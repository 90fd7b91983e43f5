"""Helpers of the projection tests: publish recorded histories as the orchestrator would
(one ExecutionEventBatch record per decision), or in Kafka transactions as the processor
does, run projectors, wait on stored offsets."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer
from flowlog.aggregates import records
from flowlog.aggregates.execution.events import ExecutionEvent, event_from_dict
from flowlog.projections import kafka as pk
from flowlog.projections.migrate import migrate
from flowlog.schemas.codec import Codec
from flowlog.schemas.ids import flowlog_uuid5
from flowlog.schemas.topics import TopicCatalog, apply_topics
from flowlog.streams.runtime.kafka import partition_of

from flowlog.settings import Settings

REPO = Path(__file__).resolve().parents[3]
HISTORIES = REPO / "tests" / "fixtures" / "histories"
TEMPLATES = ("support_triage_billing", "batch_loop", "webhook_dead_letter_then_retry",
             "delay_and_wait_approved")
#: one execution's decisions, each the events of one ExecutionEventBatch record
Decisions = list[list[ExecutionEvent]]


def template(name: str) -> list[ExecutionEvent]:
    doc = json.loads((HISTORIES / f"{name}.json").read_text())
    return [event_from_dict(e) for e in doc["events"]]


def decisions(events: list[ExecutionEvent]) -> list[list[ExecutionEvent]]:
    """A history split into the orchestrator's decisions (runs of one causation id)."""
    out: list[list[ExecutionEvent]] = []
    for e in events:
        if out and out[-1][-1].causation_id == e.causation_id:
            out[-1].append(e)
        else:
            out.append([e])
    return out


def executions(n: int, tag: str) -> Iterator[list[list[ExecutionEvent]]]:
    """``n`` executions (the recorded histories in turn, under new ids)."""
    bases = [template(t) for t in TEMPLATES]
    for i in range(n):
        eid = f"{tag}-{i}"
        evs = [dataclasses.replace(e, execution_id=eid,
                                   event_id=flowlog_uuid5(f"{eid}:{e.seq}"))
               for e in bases[i % len(bases)]]
        yield decisions(evs)


def on_one_partition(settings: Settings, n: int, tag: str, candidates: int
                     ) -> tuple[list[Decisions], int]:
    """``n`` executions (of the first ``candidates`` of `executions`) whose records land on
    one partition of execution-events, the first candidate's, and that partition."""
    parts = TopicCatalog.from_settings(settings).topics["execution-events"].partitions
    found = list(executions(candidates, tag))
    p = partition_of(found[0][0][0].execution_id, parts)
    same = [x for x in found if partition_of(x[0][0].execution_id, parts) == p]
    assert len(same) >= n, f"{len(same)} of {candidates} executions on partition {p}, not {n}"
    return same[:n], p


async def send_decisions(producer: AIOKafkaProducer, settings: Settings, decisions: Decisions,
                         partition: int) -> int:
    """Send one record per decision to ``partition`` of execution-events and wait until
    each is in the log; the offset of the last."""
    codec = Codec.from_settings(settings)
    topic = pk.topic_name(settings, "execution-events")
    sends = []
    for events in decisions:
        value = codec.encode("ExecutionEventBatch",
                             records.batch_record(events, events[0].causation_id))
        sends.append(await producer.send(topic, value=value, partition=partition,
                                         key=events[0].execution_id.encode()))
    return max(m.offset for m in await asyncio.gather(*sends))


async def write_transactions(settings: Settings, txs: list[tuple[Decisions, bool]],
                             partition: int, transactional_id: str) -> int:
    """Each (decisions, commit) of ``txs`` in one transaction of a transactional producer
    (as the processor writes): its records in the log, then committed or aborted. The
    offset of the last record written (a commit or abort marker follows it)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers,
                                transactional_id=transactional_id, enable_idempotence=True)
    await producer.start()
    last = -1
    try:
        for decisions, commit in txs:
            await producer.begin_transaction()
            last = await send_decisions(producer, settings, decisions, partition)
            if commit:
                await producer.commit_transaction()
            else:
                await producer.abort_transaction()
    finally:
        await producer.stop()
    return last


def setup(settings: Settings, schema: str) -> None:
    apply_topics(TopicCatalog.from_settings(settings), settings.bootstrap_servers)
    migrate(settings, schema)


class Log:
    """Writes decision records to execution-events, interleaving executions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.codec = Codec.from_settings(settings)
        self.topic = pk.topic_name(settings, "execution-events")
        self.producer = Producer({"bootstrap.servers": settings.bootstrap_servers,
                                  "linger.ms": 5, "enable.idempotence": True,
                                  "partitioner": "murmur2_random"})
        self.records = 0
        self.events = 0

    def decision(self, events: list[ExecutionEvent]) -> None:
        rec = records.batch_record(events, events[0].causation_id)
        self.raw(events[0].execution_id, self.codec.encode("ExecutionEventBatch", rec))
        self.events += len(events)

    def raw(self, key: str, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(self.topic, value, key.encode())
                break
            except BufferError:
                self.producer.poll(0.1)
        self.producer.poll(0)
        self.records += 1

    def interleaved(self, execs: list[list[list[ExecutionEvent]]]) -> None:
        """Every execution's decisions in order, executions interleaved round-robin."""
        depth = max(len(x) for x in execs)
        for d in range(depth):
            for x in execs:
                if d < len(x):
                    self.decision(x[d])

    def flush(self) -> None:
        assert self.producer.flush(30) == 0


async def wait_caught_up(settings: Settings, schema: str, projector: str,
                         within: float = 120.0) -> None:
    """Until the projector's stored offsets reach every partition's end offset."""
    topics = [pk.topic_name(settings, "execution-events")]
    if projector == "readmodel":
        topics.append(pk.topic_name(settings, "workflow-definitions"))
    ends = await pk.end_offsets(settings, topics)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    conn = await asyncpg.connect(settings.pg_dsn, server_settings={"search_path": schema})
    try:
        while True:
            stored = {(r["topic"], r["partition"]): r["next_offset"] for r in await conn.fetch(
                "SELECT topic, partition, next_offset FROM projection_offsets "
                "WHERE projector = $1", projector)}
            behind = {(tp.topic, tp.partition): end for tp, end in ends.items()
                      if end > 0 and stored.get((tp.topic, tp.partition), 0) < end}
            if not behind:
                return
            if loop.time() > deadline:
                raise AssertionError(f"{projector} did not catch up in {within}s: {behind}, "
                                     f"stored {stored}")
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def fetch(settings: Settings, schema: str, sql: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(settings.pg_dsn, server_settings={"search_path": schema})
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()
