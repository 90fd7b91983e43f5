"""The projector framework: a consumer-group member that applies Kafka records to
PostgreSQL exactly once in effect.

    runner = ProjectorRunner(settings, ReadModelProjector(settings))
    await runner.run(stop)

How, in order of what can go wrong:

* Offsets live in PostgreSQL (`projection_offsets`, per projector, topic and partition),
  written in the same transaction as the rows. On assignment (and after any failed
  transaction) the runner seeks to the stored offsets, never the group's; the group only
  assigns partitions (its offsets are never committed).
* Every transaction first locks its partitions' offset rows (``FOR UPDATE``) and drops the
  records below the stored offset: a member that lost a partition in a rebalance while it
  was busy cannot apply a record twice, whatever the timing; the next owner waits for it.
* The fold's seq guard makes a re-written decision (the same events at a later offset)
  change nothing; insert-only rows use ``ON CONFLICT DO NOTHING``.
* A record the projection cannot apply is written to `projection_rejects` (reason and
  Kafka coordinates) in the same transaction, and skipped; the projector never stops.
  An undecodable record also goes to the quarantine topic through the decode guard.
* A database error (restart, lost connection) rolls the batch back; the runner reconnects
  with backoff and seeks to the stored offsets again.
* The stored offset is the consumer's position after the fetch, not "last record + 1"
  (as Kafka Streams does): a transaction's commit marker (the `processor` role writes in
  transactions) and an aborted transaction's records take offsets no record returned has,
  and the position is past them. A batch stores the position its records were fetched to;
  a partition whose position moved with no record (the marker came in a later fetch) gets
  its offset stored on its own (`Projector.advance`). So `flowlog projections status`
  shows 0 lag at rest on a transactionally written partition.
* After a commit: each changed execution's status is published on Redis (see
  `projections.live`), and the lag gauges are set.
* Traces: each execution-events record applied gets a span ``projector <name>``, a child
  of the decision that wrote it (its ``traceparent`` header), from the batch's start to
  its commit; the live publish continues it. Debug lines per record carry its trace id.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import IllegalStateError
from flowlog.aggregates import records as wire
from flowlog.aggregates.execution import events as ev
from flowlog.projections import kafka as pk
from flowlog.projections.fold import Coords, Reject
from flowlog.projections.live import LivePublisher, StatusChange
from flowlog.projections.metrics import observe_lag, watch
from flowlog.schemas.codec import Codec
from flowlog.schemas.errors import ContractError
from flowlog.schemas.guard import DecodeGuard

from flowlog.observability import hooks
from flowlog.settings import Settings

log = logging.getLogger(__name__)

#: One Kafka record that could not be applied: coordinates, execution, event, reason.
RejectRow = tuple[str, int, int, "str | None", "str | None", str]


@dataclass
class Outcome:
    """What one committed batch did."""

    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    changes: list[StatusChange] = field(default_factory=list)
    records: int = 0
    applied: int = 0
    duplicates: int = 0
    rejects: int = 0
    skipped: int = 0  # records below the stored offset (applied by another member)
    newest_event_at: datetime | None = None


def decode_events(codec: Codec, msg: Any) -> list[ev.ExecutionEvent]:
    """The domain events of one execution-events record; `Reject` when it cannot be read."""
    try:
        decoded = codec.decode(msg.value)
    except ContractError as exc:
        raise Reject(f"undecodable record: {type(exc).__name__}: {exc}") from exc
    if decoded.name != "ExecutionEventBatch":
        raise Reject(f"{decoded.name} on execution-events (expected ExecutionEventBatch)")
    try:
        return wire.batch_events(decoded.record)
    except (wire.WireError, TypeError, KeyError) as exc:
        raise Reject(f"record does not map onto execution events: {exc}") from exc


def reject_row(msg: Any, reason: str, execution_id: str | None = None,
               event_type: str | None = None) -> RejectRow:
    return (msg.topic, msg.partition, msg.offset, execution_id, event_type, reason[:2000])


def coords(msg: Any) -> Coords:
    return Coords(msg.topic, msg.partition, msg.offset)


class Projector(ABC):
    """One projection: what it reads, and how one batch becomes rows in one transaction.

    Subclasses implement `connect`/`close`, `stored_offsets` and `apply`; `apply` must lock
    the batch's offset rows, drop records below them, write rows, rejects and the new
    offsets, and commit, all in one transaction (see `ReadModelProjector`).
    """

    name: ClassVar[str]
    topics: ClassVar[tuple[str, ...]]  # logical topic names

    def __init__(self, settings: Settings, schema: str | None = None,
                 codec: Codec | None = None) -> None:
        self.settings = settings
        self.schema = schema or settings.pg_schema
        self.codec = codec or Codec.from_settings(settings)
        self.topic_names = [pk.topic_name(settings, t) for t in self.topics]
        self._guard: DecodeGuard | None = None
        #: shown in pg_stat_activity (the fault tests find a transaction in flight by it)
        self.application_name = f"flowlog-projector-{self.name}-{os.getpid()}"

    def quarantine(self, msg: Any, reason: str) -> None:
        """Also send an undecodable record to the quarantine topic (operators look there)."""
        if self._guard is None:
            self._guard = DecodeGuard.from_settings(self.settings, validate=False)
        self._guard.quarantine(msg, Reject(reason))

    def flush_quarantine(self) -> None:
        if self._guard is not None:
            self._guard.flush()

    @abstractmethod
    async def connect(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def stored_offsets(self) -> dict[TopicPartition, int]:
        """Every offset this projector has stored (next record to read)."""

    @abstractmethod
    async def on_assigned(self, stored: dict[TopicPartition, int]) -> None:
        """Called after assignment and after a failed batch (in-memory state to rebuild)."""

    @abstractmethod
    async def apply(self, batches: dict[TopicPartition, list[Any]],
                    positions: dict[TopicPartition, int] | None = None) -> Outcome:
        """Apply the records in one transaction; returns what was committed. `positions`:
        the consumer's position after the fetch, per partition (past the records and any
        control records after them); stored instead of "last + 1" when larger."""

    @abstractmethod
    async def advance(self, offsets: dict[TopicPartition, int]) -> None:
        """Store these offsets (never lowering a stored one) with no rows: the consumer
        skipped only records that have nothing to apply (transaction markers, aborted
        records) to get there."""


class _Listener(ConsumerRebalanceListener):
    def __init__(self, runner: ProjectorRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.runner.assigned -= set(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.runner.assigned |= set(assigned)
        self.runner.resync = True
        log.info("projector %s: assigned %s", self.runner.projector.name,
                 sorted((tp.topic, tp.partition) for tp in assigned))


class ProjectorRunner:
    """Runs one projector as a consumer-group member until `stop` is set."""

    def __init__(self, settings: Settings, projector: Projector,
                 publisher: LivePublisher | None = None) -> None:
        self.settings = settings
        self.projector = projector
        self.publisher = publisher if publisher is not None else LivePublisher(settings)
        self.group = f"projector-{projector.name}"
        self.consumer: AIOKafkaConsumer = pk.group_consumer(settings, self.group,
                                                            projector.topic_names)
        self.assigned: set[TopicPartition] = set()
        self.resync = False
        self.stats: Counter[str] = Counter()
        #: seconds from each record's Kafka timestamp to its batch's commit (benchmarks)
        self.lag_samples: list[float] = []
        self.keep_lag_samples = False
        self.committed = asyncio.Event()  # set after every commit (tests wait on it)
        self.assigned_at: float | None = None  # perf_counter at the first seek (benchmarks)
        self.events_topic = pk.topic_name(settings, "execution-events")
        #: the offsets stored in PostgreSQL, as this runner last set or read them
        self.stored: dict[TopicPartition, int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        await self._connect_db(stop)
        self.consumer.subscribe(self.projector.topic_names, listener=_Listener(self))
        await self.consumer.start()
        watch(self.group, self.consumer)
        try:
            while not stop.is_set():
                batches = await self.consumer.getmany(
                    timeout_ms=200, max_records=self.settings.projector_batch_records)
                if self.resync:
                    await self._resync(stop)
                    continue  # what was fetched before the seek is fetched again
                batches = {tp: msgs for tp, msgs in batches.items() if tp in self.assigned}
                if batches:
                    await self._apply(batches, stop)
                if not self.resync:
                    await self._advance(stop)
        finally:
            await self.consumer.stop()
            await self.projector.close()
            await self.publisher.close()

    async def _connect_db(self, stop: asyncio.Event) -> None:
        delay = 0.2
        while not stop.is_set():
            try:
                await self.projector.connect()
                return
            except Exception as exc:  # PostgreSQL down or restarting: wait and retry
                log.warning("projector %s: database not reachable (%s); retrying in %.1fs",
                            self.projector.name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _resync(self, stop: asyncio.Event) -> None:
        """Seek every assigned partition to its stored offset (start: the beginning)."""
        stored: dict[TopicPartition, int] = {}
        while not stop.is_set():
            try:
                stored = await self.projector.stored_offsets()
                await self.projector.on_assigned(stored)
                break
            except Exception as exc:
                log.warning("projector %s: reading stored offsets failed (%s); reconnecting",
                            self.projector.name, exc)
                await self.projector.close()
                await self._connect_db(stop)
        if stop.is_set():
            return
        tps = sorted(self.assigned, key=lambda t: (t.topic, t.partition))
        begins = await self.consumer.beginning_offsets(tps) if tps else {}
        self.stored = {}
        for tp in tps:
            self.stored[tp] = max(stored.get(tp, 0), begins[tp])
            self.consumer.seek(tp, self.stored[tp])
        self.resync = False
        if self.assigned_at is None:
            self.assigned_at = time.perf_counter()

    async def _apply(self, batches: dict[TopicPartition, list[Any]],
                     stop: asyncio.Event) -> None:
        name = self.projector.name
        spans = hooks.project(name, (m for tp, msgs in batches.items()
                                     if tp.topic == self.events_topic for m in msgs))
        positions = {tp: p for tp in batches if (p := await self._position(tp)) is not None}
        try:
            outcome = await self.projector.apply(batches, positions)
        except Exception as exc:
            hooks.projected(spans, log, name, exc)
            self.stats["failed_batches"] += 1
            log.warning("projector %s: batch rolled back (%s: %s); resuming from the stored "
                        "offsets", self.projector.name, type(exc).__name__, exc)
            await self.projector.close()
            await self._connect_db(stop)
            self.resync = True
            return
        hooks.projected(spans, log, name)
        self.stored.update(outcome.next_offsets)
        now = time.time()
        if outcome.skipped:
            # another member was further on (a rebalance overlapped): what it applied is
            # not in our in-memory state (definitions), so rebuild that and re-seek
            self.resync = True
        if self.keep_lag_samples:
            for msgs in batches.values():
                self.lag_samples.extend(now - m.timestamp / 1000 for m in msgs)
        self.stats["records"] += outcome.records
        self.stats["events"] += outcome.applied
        self.stats["duplicates"] += outcome.duplicates
        self.stats["rejects"] += outcome.rejects
        self.stats["skipped"] += outcome.skipped
        self.stats["batches"] += 1
        observe_lag(self.projector.name, outcome.newest_event_at)
        self.committed.set()
        self.committed = asyncio.Event()
        if outcome.changes:
            await self.publisher.publish(outcome.changes, hooks.trace_parents(spans))

    async def _position(self, tp: TopicPartition) -> int | None:
        try:
            return await self.consumer.position(tp)
        except IllegalStateError:  # no longer assigned (a rebalance under way)
            return None

    async def _advance(self, stop: asyncio.Event) -> None:
        """Store the position of an assigned partition that moved past its stored offset
        with no record to apply: the consumer skipped a transaction marker or aborted
        records. Every record it returned since the last seek was applied (a failed or
        overlapping batch re-seeks first), so only skipped offsets lie in between."""
        moved: dict[TopicPartition, int] = {}
        for tp in list(self.assigned):
            known = self.stored.get(tp)
            position = await self._position(tp) if known is not None else None
            if known is not None and position is not None and position > known:
                moved[tp] = position
        if not moved:
            return
        try:
            await self.projector.advance(moved)
        except Exception as exc:
            log.warning("projector %s: storing offsets past skipped records failed (%s: %s); "
                        "resuming from the stored offsets", self.projector.name,
                        type(exc).__name__, exc)
            await self.projector.close()
            await self._connect_db(stop)
            self.resync = True
            return
        self.stored.update(moved)
        self.stats["advanced"] += len(moved)


def now_utc() -> datetime:
    return datetime.now(UTC)
