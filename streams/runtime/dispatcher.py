"""The dispatcher (role `dispatcher`, formerly `timers`): node tasks, due timers and
admissions, derived from execution-events.

Its per-partition state is the processor's `PartitionState` (processor_state.py), folded
the way the processor's rebuild folds the log: each decoded batch record is mapped to domain
events by `records.batch_events` and replayed into it (`PartitionState.replay`, i.e.
`evolve`). So the armed timers, phase, envelope and loop items it works from are `evolve`'s,
not a mirror fold's. Sequence numbers are judged by `policy.seq_step` first (a re-written
event is a repeat, a skipped seq a logged gap, a late event of a finished execution ignored),
so only the next event of an execution reaches the fold. Memory is bounded as the
processor's: unfinished executions plus the retired states of the last
`FLOWLOG_FINISHED_WINDOW` finished ones (`FinishedWindow`), armed timers in a heap by due
time with lazy deletion (`PartitionState.due`).

On assignment it re-reads the partition from the beginning (that rebuilds the timers) and
issues node tasks only for `NodeScheduled` events at or after the committed offset (the
ones before were issued). Tasks are produced and the loop polls on; the `Committer` commits
the offset once they are acknowledged: at-least-once. A due timer is sent once per process
(per arming) as a `TimerFired` input with an id derived from (execution, timer), so a
re-sent timer is a duplicate the orchestrator drops.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from flowlog.aggregates import records
from flowlog.aggregates.execution import ExecutionState
from flowlog.aggregates.execution import events as dev
from flowlog.schemas.codec import Codec
from flowlog.streams.runtime import policy
from flowlog.streams.runtime.admission import Entry
from flowlog.streams.runtime.commits import Committer, poll_loop
from flowlog.streams.runtime.kafka import catalog, partition_of, seek_to_start
from flowlog.streams.runtime.ports import Consumer, Definitions, FlowControl, Producer
from flowlog.streams.runtime.processor_state import PartitionState
from flowlog.streams.runtime.taskrender import TaskRenderer

from flowlog.observability import hooks
from flowlog.settings import Settings

log = logging.getLogger(__name__)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, owner: Dispatcher) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.owner.lock:
            await self.owner.committer.flush()  # tasks acked and offsets committed first
            for tp in revoked:
                self.owner.parts.pop(tp.partition, None)
                self.owner.resume_at.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        async with self.owner.lock:
            for tp in assigned:
                committed = await self.owner.consumer.committed(tp)
                self.owner.assign(tp.partition, committed or 0)
            await seek_to_start(self.owner.consumer, list(assigned))
        log.info("dispatcher: assigned %s", sorted(tp.partition for tp in assigned))


class Dispatcher:
    """Built by the composition root (`compose.dispatcher`): ``definitions`` the registry
    and its follower, ``producer`` the process's idempotent producer, ``consumer`` a member
    of the `dispatcher` group over execution-events, ``codec`` the process's codec,
    ``admission`` flow control (Redis; the root closes it)."""

    def __init__(self, settings: Settings, definitions: Definitions, producer: Producer, *,
                 consumer: Consumer, codec: Codec, admission: FlowControl) -> None:
        self.settings = settings
        self.follower = definitions
        self.registry = definitions.registry
        self.producer = producer
        self.codec = codec
        cat = catalog(settings)
        self.events_topic = cat.name("execution-events")
        self.tasks_topic = cat.name("node-tasks")
        self.results_topic = cat.name("node-results")
        self.timers_topic = cat.name("timers")
        #: per assigned partition: the state folded by `evolve` (as the processor keeps it)
        self.parts: dict[int, PartitionState] = {}
        #: per assigned partition: the committed offset (tasks before it were issued)
        self.resume_at: dict[int, int] = {}
        self.renderer = TaskRenderer(settings.executor_default_timeout_ms)
        self.lock = asyncio.Lock()
        self.stats: Counter[str] = Counter()
        self.commands_topic = cat.name("commands")
        self.partitions = cat.topics["commands"].partitions
        self.admission = admission
        self.consumer = consumer
        self.committer = Committer(self.consumer, "dispatcher",
                                   interval_s=settings.commit_interval_ms / 1000)

    def assign(self, partition: int, resume_at: int) -> PartitionState:
        """Start partition ``partition`` afresh (its log is re-read from the beginning);
        tasks are issued from offset ``resume_at`` on."""
        part = self.parts[partition] = PartitionState(partition, self.settings.finished_window)
        self.resume_at[partition] = resume_at
        return part

    async def run(self) -> None:
        self.consumer.subscribe([self.events_topic], listener=_Listener(self))
        await self.consumer.start()
        ticker = asyncio.create_task(self._timers(), name="dispatcher-timers")
        try:
            await poll_loop(self.consumer, self.committer, self.lock, self._handle)
        finally:
            ticker.cancel()

    async def _handle(self, batches: dict[TopicPartition, list[Any]]) -> None:
        sends: list[Any] = []
        offsets: dict[TopicPartition, int] = {}
        for tp, msgs in batches.items():
            p = tp.partition
            part = self.parts.get(p)
            if part is None:
                continue
            hooks.records_in("dispatcher", tp.topic, len(msgs))
            resume_at = self.resume_at[p]
            touched: dict[str, ExecutionState] = {}
            for msg in msgs:
                try:
                    wire = self.codec.decode(msg.value).record
                    events = records.batch_events(wire)  # as the processor's rebuild maps them
                except Exception:
                    log.exception("unreadable execution-events record %s@%s", tp, msg.offset)
                    continue
                issue = policy.issues_tasks(msg.offset, resume_at)
                scope = hooks.enter("dispatcher issue", msg)  # tasks continue its trace
                for e, r in zip(events, wire["events"], strict=True):
                    state, applied = self._apply(part, e)
                    if state is None:
                        continue
                    if applied and issue and isinstance(e, dev.NodeScheduled):
                        sends.append(await self._issue(part, p, r))
                    execution_id = e.execution_id
                    if policy.flow_controlled(e.event_type, execution_id in part.limited):
                        part.limited.add(execution_id)
                        touched[execution_id] = state
                hooks.leave(scope)
            if touched:
                await self._flow_control(part, touched, sends)
            last = msgs[-1].offset + 1
            if last > resume_at:
                offsets[tp] = last
                self.resume_at[p] = last
        hooks.records_out("dispatcher", self.tasks_topic, len(sends))
        if offsets or sends:  # committed by the committer once the tasks are acknowledged
            await self.committer.add(sends, offsets)

    @staticmethod
    def _apply(part: PartitionState, e: dev.ExecutionEvent
               ) -> tuple[ExecutionState | None, bool]:
        """Fold one event into the partition's state with `evolve` (`PartitionState.replay`,
        the processor's rebuild path) if it is the execution's next one.

        Returns the execution's state after it (None: an event of a finished execution, or an
        unknown execution's event after a gap) and whether it was applied as a live one (a
        finished execution's late event only advances its retired state, as in the processor).
        """
        execution_id = e.execution_id
        state = part.states.get(execution_id)  # a finished one's retired state too
        finished = execution_id in part.finished
        step = policy.seq_step(None if state is None or finished else state.seq, e.seq,
                               finished)
        if step == "finished":  # a re-written or late event of a finished execution: its
            part.replay(e)  # retired state takes a late one's seq, as the processor's does
            return None, False
        if step == "repeat":
            return state, False  # a re-written event already applied
        if step == "gap":
            log.error("dispatcher: gap in %s: seq %s after %s", execution_id, e.seq,
                      0 if state is None else state.seq)
            return state, False
        part.replay(e)  # the next seq: always applied
        return part.states.get(execution_id), True

    async def _flow_control(self, part: PartitionState, touched: dict[str, ExecutionState],
                            sends: list[Any]) -> None:
        """Queue what waits, release what ended, and admit whoever got a slot."""
        admitted: list[Entry] = []
        for execution_id, state in touched.items():
            entry = policy.admission_entry(execution_id, state.workflow_id,
                                           state.workflow_version, state.tenant)
            step = policy.flow_step(state.phase, state.finished)
            if step == "enqueue":
                definition = self.registry.definition(state.workflow_id, state.workflow_version)
                admitted += await self.admission.enqueue(entry, policy.workflow_limit(definition))
            elif step == "release":
                admitted += await self.admission.release(entry)
                part.limited.discard(execution_id)
        for entry in admitted:
            self.stats["admitted"] += 1
            record = records.admitted_record(
                execution_id=entry.execution_id, workflow_id=entry.workflow_id,
                workflow_version=entry.workflow_version, tenant=entry.tenant,
                occurred_at=datetime.now(UTC))
            value = self.codec.encode("ExecutionAdmitted", record)
            sends.append(await self.producer.send(
                self.commands_topic, value=value, key=entry.execution_id.encode(),
                partition=partition_of(entry.execution_id, self.partitions),
                headers=hooks.headers_for(entry.execution_id)))

    async def _issue(self, part: PartitionState, p: int, r: dict[str, Any]) -> Any:
        execution_id, node_id = r["execution_id"], r["node_id"]
        workflow_id, version = r["workflow_id"], r["workflow_version"]
        definition = self.registry.definition(workflow_id, version)
        if definition is None:
            await self.follower.catch_up(within=5.0)
            definition = self.registry.definition(workflow_id, version)
        self.stats["tasks"] += 1
        item = part.item(execution_id, node_id)
        name, record = self.renderer.render(r, definition, item, datetime.now(UTC))
        topic = self.tasks_topic if policy.record_topic(name) == "node-tasks" else (
            self.results_topic)
        value = self.codec.encode(name, record)
        return await self.producer.send(topic, value=value, key=execution_id.encode(),
                                        partition=p, headers=hooks.headers())

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
        """Send every armed timer whose due time has come, once per arming (`due` pops it
        from the heap; the state keeps it armed until its `TimerFired` is folded)."""
        now_at = datetime.now(UTC)
        sends = []
        for p, part in self.parts.items():
            for execution_id, timer_id, (kind, node_id, attempt, due_iso) in part.due(now_at):
                x = part.states[execution_id]
                record = records.timer_fired_record(
                    execution_id=execution_id, workflow_id=x.workflow_id,
                    workflow_version=x.workflow_version, tenant=x.tenant,
                    correlation_id=x.correlation_id, timer_id=timer_id, kind=kind,
                    node_id=node_id, attempt=attempt, due_at=datetime.fromisoformat(due_iso),
                    occurred_at=datetime.now(UTC))
                value = self.codec.encode("TimerFired", record)
                sends.append(await self.producer.send(
                    self.timers_topic, value=value, key=execution_id.encode(), partition=p,
                    headers=hooks.headers_for(execution_id)))
                self.stats["timers_fired"] += 1
        if sends:
            await asyncio.gather(*sends)
