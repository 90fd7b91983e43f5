"""The dispatcher (`timers` role): node tasks and due timers, derived from execution-events.

It folds execution-events with the aggregate's own `evolve`, so the armed timers are
exactly `state.timers` of each unfinished execution. On assignment it re-reads the
partition from the beginning (that rebuilds the timers) and issues node tasks only for
`NodeScheduled` events at or after the committed offset (the ones before were issued).
Tasks are produced, acknowledged, then the offset is committed: at-least-once. A due timer
is sent once per process as a `TimerFired` input with an id derived from (execution,
timer), so a re-sent timer is a duplicate the orchestrator drops.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import OffsetAndMetadata
from flowlog.aggregates.execution import ExecutionState, evolve
from flowlog.aggregates.execution import events as dev
from flowlog.aggregates.execution.taskconfig import render_task_config
from flowlog.schemas.codec import Codec
from flowlog.schemas.model import canonical_json
from flowlog.streams import wire
from flowlog.streams.runtime.admission import Admission, Entry
from flowlog.streams.runtime.kafka import (
    catalog,
    group_consumer,
    partition_of,
    seek_to_start,
)
from flowlog.streams.runtime.registry import RegistryFollower

from flowlog.settings import Settings

log = logging.getLogger(__name__)


class _Partition:
    def __init__(self, resume_at: int) -> None:
        self.resume_at = resume_at  # committed offset: tasks before it were issued
        self.states: dict[str, ExecutionState] = {}
        self.items: dict[tuple[str, str], Any] = {}  # (execution, loop[i]) -> item
        self.sent: set[tuple[str, str]] = set()  # (execution, timer) fired by this process
        self.limited: set[str] = set()  # executions under flow control (queued once)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, owner: Dispatcher) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.owner.lock:
            for tp in revoked:
                self.owner.parts.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        async with self.owner.lock:
            for tp in assigned:
                committed = await self.owner.consumer.committed(tp)
                self.owner.parts[tp.partition] = _Partition(committed or 0)
            await seek_to_start(self.owner.consumer, list(assigned))
        log.info("dispatcher: assigned %s", sorted(tp.partition for tp in assigned))


class Dispatcher:
    def __init__(self, settings: Settings, follower: RegistryFollower, producer: Any,
                 codec: Codec | None = None) -> None:
        self.settings = settings
        self.follower = follower
        self.registry = follower.registry
        self.producer = producer
        self.codec = codec or Codec.from_settings(settings)
        cat = catalog(settings)
        self.events_topic = cat.name("execution-events")
        self.tasks_topic = cat.name("node-tasks")
        self.results_topic = cat.name("node-results")
        self.timers_topic = cat.name("timers")
        self.parts: dict[int, _Partition] = {}
        self.lock = asyncio.Lock()
        self.stats: Counter[str] = Counter()
        self.commands_topic = cat.name("commands")
        self.partitions = cat.topics["commands"].partitions
        self._admission: Admission | None = None
        self.consumer = group_consumer(settings, "dispatcher", [self.events_topic])

    @property
    def admission(self) -> Admission:
        if self._admission is None:
            self._admission = Admission(self.settings.redis_url, self.settings.topic_prefix,
                                        self.settings.tenant_max_executions)
        return self._admission

    async def run(self) -> None:
        self.consumer.subscribe([self.events_topic], listener=_Listener(self))
        await self.consumer.start()
        ticker = asyncio.create_task(self._timers(), name="dispatcher-timers")
        try:
            while True:
                batches = await self.consumer.getmany(timeout_ms=200)
                if batches:
                    async with self.lock:
                        await self._handle(batches)
        finally:
            ticker.cancel()
            await self.consumer.stop()
            if self._admission is not None:
                await self._admission.aclose()

    async def _handle(self, batches: dict[TopicPartition, list[Any]]) -> None:
        sends: list[Any] = []
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, msgs in batches.items():
            part = self.parts.get(tp.partition)
            if part is None:
                continue
            touched: dict[str, ExecutionState] = {}
            for msg in msgs:
                try:
                    events = wire.batch_events(self.codec.decode(msg.value).record)
                except Exception:
                    log.exception("unreadable execution-events record %s@%s", tp, msg.offset)
                    continue
                issue = msg.offset >= part.resume_at
                for e in events:
                    await self._apply(part, tp.partition, e, issue, sends)
                    if isinstance(e, dev.ExecutionQueued):
                        part.limited.add(e.execution_id)
                    if e.execution_id in part.limited:
                        touched[e.execution_id] = part.states[e.execution_id]
            if touched:
                await self._flow_control(part, touched, sends)
            last = msgs[-1].offset + 1
            if last > part.resume_at:
                offsets[tp] = OffsetAndMetadata(last, "")
                part.resume_at = last
        if sends:
            await asyncio.gather(*sends)
        if offsets:
            try:
                await self.consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                log.warning("dispatcher: commit failed: %s", exc)

    async def _apply(self, part: _Partition, p: int, e: dev.ExecutionEvent, issue: bool,
                     sends: list[Any]) -> None:
        state = part.states.get(e.execution_id)
        if state is None:
            state = part.states[e.execution_id] = ExecutionState()
        if e.seq <= state.seq:
            return  # a re-written event already applied
        if e.seq != state.seq + 1:
            log.error("dispatcher: gap in %s: seq %s after %s", e.execution_id, e.seq, state.seq)
            return
        evolve(state, e)
        if isinstance(e, dev.LoopIterationStarted):
            part.items[(e.execution_id, f"{e.node_id}[{e.index}]")] = e.item
        elif isinstance(e, dev.NodeScheduled) and issue:
            sends.append(await self._issue(part, p, e))
        if state.finished:
            # keep a stub so late duplicates are recognised; drop the bulk
            part.states[e.execution_id] = _finished_stub(state)
            for key in [k for k in part.items if k[0] == e.execution_id]:
                del part.items[key]

    async def _flow_control(self, part: _Partition, touched: dict[str, ExecutionState],
                            sends: list[Any]) -> None:
        """Queue what waits, release what ended, and admit whoever got a slot."""
        admitted: list[Entry] = []
        for execution_id, state in touched.items():
            entry = Entry(execution_id, state.workflow_id, state.workflow_version, state.tenant)
            if state.phase == "queued":
                definition = self.registry.definition(state.workflow_id, state.workflow_version)
                limit = definition.max_executions if definition is not None else None
                admitted += await self.admission.enqueue(entry, limit)
            elif state.finished:
                admitted += await self.admission.release(entry)
                part.limited.discard(execution_id)
        for entry in admitted:
            self.stats["admitted"] += 1
            record = {
                **wire.envelope(
                    "ExecutionAdmitted",
                    event_id=wire.derived_id(entry.execution_id, "admitted"),
                    execution_id=entry.execution_id, workflow_id=entry.workflow_id,
                    workflow_version=entry.workflow_version, occurred_at=datetime.now(UTC),
                    correlation_id=None, causation_id=None, tenant=entry.tenant),
            }
            value = self.codec.encode("ExecutionAdmitted", record)
            sends.append(await self.producer.send(
                self.commands_topic, value=value, key=entry.execution_id.encode(),
                partition=partition_of(entry.execution_id, self.partitions)))

    async def _issue(self, part: _Partition, p: int, e: dev.NodeScheduled) -> Any:
        definition = self.registry.definition(e.workflow_id, e.workflow_version)
        if definition is None:
            await self.follower.catch_up(within=5.0)
            definition = self.registry.definition(e.workflow_id, e.workflow_version)
        env = dict(execution_id=e.execution_id, workflow_id=e.workflow_id,
                   workflow_version=e.workflow_version, occurred_at=e.occurred_at,
                   correlation_id=e.correlation_id, causation_id=e.event_id, tenant=e.tenant)
        self.stats["tasks"] += 1
        try:
            if definition is None:
                raise LookupError(f"definition {e.workflow_id} v{e.workflow_version} unknown")
            cnode = definition.node(e.node_id)
            item = part.items.get((e.execution_id, e.node_id))
            config = render_task_config(definition, e.node_id, e.input if isinstance(
                e.input, dict) else {"value": e.input}, execution_id=e.execution_id, item=item)
        except Exception as exc:  # cannot be run: report the attempt failed, not retryable
            now = datetime.now(UTC)
            record = {
                **wire.envelope("NodeResultReported",
                                event_id=wire.derived_id(e.task_key, "result"), **env),
                "node_id": e.node_id, "attempt": e.attempt, "task_key": e.task_key,
                "status": "failed", "output": None,
                "error": {"type": type(exc).__name__, "message": str(exc), "retryable": False},
                "started_at": now, "finished_at": now, "model_calls": [], "tool_calls": [],
            }
            value = self.codec.encode("NodeResultReported", record)
            return await self.producer.send(self.results_topic, value=value,
                                            key=e.execution_id.encode(), partition=p)
        timeout_ms = cnode.spec.timeout_ms or self.settings.executor_default_timeout_ms
        record = {
            **wire.envelope("NodeTaskIssued", event_id=wire.derived_id(e.task_key, "task"),
                            **env),
            "node_id": e.node_id, "node_type": e.node_type, "attempt": e.attempt,
            "task_key": e.task_key, "input": canonical_json(e.input),
            "config": canonical_json(config), "timeout_ms": timeout_ms,
            "deadline_at": e.occurred_at + timedelta(milliseconds=timeout_ms),
        }
        value = self.codec.encode("NodeTaskIssued", record)
        return await self.producer.send(self.tasks_topic, value=value,
                                        key=e.execution_id.encode(), partition=p)

    async def _timers(self) -> None:
        interval = self.settings.timer_tick_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.lock:
                    await self._fire_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatcher: timer tick failed")

    async def _fire_due(self) -> None:
        now = datetime.now(UTC)
        sends = []
        for p, part in self.parts.items():
            for execution_id, state in part.states.items():
                if state.finished or not state.timers:
                    continue
                for timer_id, (kind, node_id, attempt, due_iso) in state.timers.items():
                    if (execution_id, timer_id) in part.sent:
                        continue
                    due_at = datetime.fromisoformat(due_iso)
                    if due_at > now:
                        continue
                    part.sent.add((execution_id, timer_id))
                    record = {
                        **wire.envelope(
                            "TimerFired", event_id=wire.derived_id(execution_id, timer_id,
                                                                   "fired"),
                            execution_id=execution_id, workflow_id=state.workflow_id,
                            workflow_version=state.workflow_version,
                            occurred_at=datetime.now(UTC), correlation_id=state.correlation_id,
                            causation_id=None, tenant=state.tenant),
                        "timer_id": timer_id, "kind": kind, "node_id": node_id,
                        "attempt": attempt, "due_at": due_at,
                    }
                    value = self.codec.encode("TimerFired", record)
                    sends.append(await self.producer.send(
                        self.timers_topic, value=value, key=execution_id.encode(), partition=p))
                    self.stats["timers_fired"] += 1
        if sends:
            await asyncio.gather(*sends)


def _finished_stub(state: ExecutionState) -> ExecutionState:
    stub = ExecutionState(execution_id=state.execution_id, workflow_id=state.workflow_id,
                          workflow_version=state.workflow_version, tenant=state.tenant,
                          phase=state.phase, seq=state.seq)
    return stub
