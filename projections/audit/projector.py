"""`flowlog worker audit`: the audit-store projector.

A consumer-group member on `execution-events` and `commands` (its own small loop: the
shared projector base of the projections issue was not committed when this was written).
Per partition and poll, one PostgreSQL transaction holds the new aggregate events, their
index rows and the partition's offset (eventsourcing `Tracking`, application name
`audit:<topic>:<partition>`, notification id = Kafka offset). On assignment each partition
resumes after its stored offset, so a restart or a `kill -9` neither loses nor doubles an
event. Duplicate batches (an orchestrator that re-decided after a crash writes the same
seqs again) are skipped by seq; a record that does not decode, or whose seqs leave a gap,
is quarantined with the reason and its offset still recorded: the loop never stops on a
bad record. Records of `commands` are kept with who sent them and why (the command
gateway's `flowlog-actor` and `flowlog-reason` headers), the same way.

Each record stored gets a span ``projector audit``, a child of its ``traceparent`` (the
decision or command that wrote it), ended when its transaction is over.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from eventsourcing.persistence import Tracking
from flowlog.aggregates.execution.aggregate import WorkflowExecution
from flowlog.aggregates.execution.events import event_to_dict
from flowlog.aggregates.records import WireError, batch_events
from flowlog.projections.audit.store import AuditStore, CommandRow, IndexRow
from flowlog.schemas.guard import DecodeGuard
from flowlog.schemas.topics import TopicCatalog

from flowlog.observability import hooks
from flowlog.settings import Settings

log = logging.getLogger(__name__)
GROUP = "audit"


# the command gateway's audit headers (api/gateway/app.py; projections may not import api)
ACTOR_HEADER = "flowlog-actor"
REASON_HEADER = "flowlog-reason"


def tracking_name(topic: str, partition: int) -> str:
    return f"audit:{topic}:{partition}"


def _headers(msg: Any) -> dict[str, str]:
    out = {}
    for key, value in getattr(msg, "headers", None) or ():
        name = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
        out[name] = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return out


class Projector:
    """Applies decoded `ExecutionEventBatch` records of one partition to the store."""

    def __init__(self, settings: Settings, store: AuditStore, guard: DecodeGuard) -> None:
        self.settings = settings
        self.store = store
        self.guard = guard
        self.cache: OrderedDict[str, WorkflowExecution] = OrderedDict()
        self.applied = 0  # events stored by this process
        self.duplicates = 0

    def _aggregate(self, execution_id: str) -> WorkflowExecution | None:
        agg = self.cache.get(execution_id)
        if agg is not None:
            self.cache.move_to_end(execution_id)
            return agg
        agg = self.store.load(execution_id)
        if agg is not None:
            self._remember(agg, execution_id)
        return agg

    def _remember(self, agg: WorkflowExecution, execution_id: str) -> None:
        self.cache[execution_id] = agg
        self.cache.move_to_end(execution_id)
        while len(self.cache) > self.settings.audit_cache_executions:
            self.cache.popitem(last=False)

    def apply(self, topic: str, partition: int, msgs: list[Any]) -> None:
        """Store what `msgs` add, with the partition's offset, in one transaction."""
        touched: dict[str, WorkflowExecution] = {}
        rows: list[IndexRow] = []
        every = max(1, self.settings.audit_snapshot_every)
        snapshots: list[Any] = []
        try:
            for msg in msgs:
                accepted = self.guard.decode(msg)
                if accepted is None:
                    continue
                if accepted.name != "ExecutionEventBatch":
                    self.guard.quarantine(msg, WireError(
                        f"{accepted.name} on execution-events: only ExecutionEventBatch "
                        "records belong there"))
                    continue
                try:
                    events = batch_events(accepted.record)
                except (WireError, KeyError, TypeError, ValueError) as exc:
                    self.guard.quarantine(msg, exc)
                    continue
                if not events:
                    continue
                execution_id = events[0].execution_id
                agg = touched.get(execution_id) or self._aggregate(execution_id)
                version = agg.version if agg is not None else 0
                fresh = [e for e in events if e.seq > version]
                self.duplicates += len(events) - len(fresh)
                if not fresh:
                    continue
                if fresh[0].seq != version + 1 or any(
                        b.seq != a.seq + 1 for a, b in itertools.pairwise(fresh)):
                    self.guard.quarantine(msg, WireError(
                        f"execution {execution_id}: events {fresh[0].seq}..{fresh[-1].seq} "
                        f"do not follow the stored seq {version} (a gap in the log)"))
                    continue
                for e in fresh:
                    if agg is None:
                        agg = WorkflowExecution(execution_id=execution_id,
                                                event=event_to_dict(e),
                                                timestamp=e.occurred_at)
                    else:
                        agg._recorded(event=event_to_dict(e), timestamp=e.occurred_at)
                    rows.append(IndexRow.of(e))
                    if e.seq % every == 0:  # a snapshot at every N-th event exactly
                        snapshots.append(self.store.snapshot_of(agg))
                assert agg is not None
                touched[execution_id] = agg
                self._remember(agg, execution_id)
            self.guard.flush()  # quarantined records are stored before their offset is
            tracking = Tracking(tracking_name(topic, partition), msgs[-1].offset)
            self.store.save(touched.values(), tracking, rows)
        except BaseException:
            # Pending events of a failed transaction must not survive in memory.
            for execution_id in touched:
                self.cache.pop(execution_id, None)
            raise
        self.applied += len(rows)
        if snapshots:
            try:
                self.store.put_snapshots(snapshots)
            except Exception:  # a snapshot is a copy; the events are stored already
                log.exception("audit: %d snapshots failed", len(snapshots))

    def apply_commands(self, topic: str, partition: int, msgs: list[Any]) -> None:
        """Store the command records of `msgs` (who and why, for the audit trail) with the
        partition's offset, in one transaction."""
        rows: list[CommandRow] = []
        for msg in msgs:
            accepted = self.guard.decode(msg)
            if accepted is None:
                continue
            r = accepted.record
            event_id = r.get("event_id")
            if not isinstance(event_id, str):
                continue
            headers = _headers(msg)
            rows.append(CommandRow(
                event_id, r.get("execution_id"), accepted.name, r.get("node_id"),
                r.get("reason") or None, headers.get(ACTOR_HEADER),
                headers.get(REASON_HEADER), r.get("occurred_at"), topic, partition,
                msg.offset))
        self.guard.flush()
        self.store.save_commands(rows, Tracking(tracking_name(topic, partition),
                                                msgs[-1].offset))

    def forget_partition(self) -> None:
        self.cache.clear()


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if revoked:
            self.runner.projector.forget_partition()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.runner.seek_stored(assigned)


class Runner:
    def __init__(self, settings: Settings, store: AuditStore,
                 guard: DecodeGuard | None = None) -> None:
        self.settings = settings
        self.store = store
        catalog = TopicCatalog.from_settings(settings)
        self.topic = catalog.name("execution-events")
        self.commands_topic = catalog.name("commands")
        self.projector = Projector(settings, store,
                                   guard or DecodeGuard.from_settings(settings, validate=False))
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=settings.topic_prefix + GROUP, enable_auto_commit=False,
            isolation_level=settings.kafka_isolation_level,  # never an aborted transaction
            auto_offset_reset="earliest", max_poll_records=settings.max_poll_records,
            session_timeout_ms=settings.consumer_session_timeout_ms,
            heartbeat_interval_ms=2_000, max_partition_fetch_bytes=8 * 1024 * 1024)

    async def seek_stored(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            stored = await asyncio.to_thread(self.store.position,
                                             tracking_name(tp.topic, tp.partition))
            if stored is None:
                begin = (await self.consumer.beginning_offsets([tp]))[tp]
                self.consumer.seek(tp, begin)
            else:
                self.consumer.seek(tp, stored + 1)

    async def serve(self, stop: asyncio.Event) -> None:
        await self.consumer.start()
        try:
            self.consumer.subscribe([self.topic, self.commands_topic],
                                    listener=_Rebalance(self))
            while not stop.is_set():
                batch = await self.consumer.getmany(timeout_ms=200)
                for tp, msgs in batch.items():
                    if not msgs:
                        continue
                    apply = self.projector.apply if tp.topic == self.topic else \
                        self.projector.apply_commands
                    spans = hooks.project("audit", msgs)
                    try:
                        await asyncio.to_thread(apply, tp.topic, tp.partition, msgs)
                        hooks.projected(spans, log, "audit")
                    except Exception as exc:
                        hooks.projected(spans, log, "audit", exc)
                        log.exception("audit: storing %s[%s] @%s failed; retrying from the "
                                      "stored offset", tp.topic, tp.partition, msgs[0].offset)
                        await self.seek_stored([tp])
                        try:
                            await asyncio.wait_for(stop.wait(), timeout=1.0)
                        except TimeoutError:
                            pass
        finally:
            await self.consumer.stop()


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """`flowlog worker audit`: serve until `stop` is set."""
    store = await asyncio.to_thread(AuditStore, settings)
    try:
        await Runner(settings, store).serve(stop)
    finally:
        store.close()
