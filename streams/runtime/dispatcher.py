"""The dispatcher (role `dispatcher`, formerly `timers`): node tasks, due timers and
admissions, derived from execution-events.

It keeps only what its two jobs need, per unfinished execution: the envelope fields of a
`TimerFired` or flow-control entry, the last applied seq, the armed timers (mirroring
`state.timers` of the aggregate's `evolve`, checked against it by
tests/unit/streams/test_dispatcher_fold.py), loop items, and the attempt of each loop
iteration (the one thing `evolve` reads to disarm a timer). Events are read from the
decoded batch records as they are: no domain objects, no full `ExecutionState` fold.
A finished execution is dropped (only its id is remembered, in a bounded list), so memory
follows unfinished executions, not history. Armed timers sit in a heap by due time per
partition; a cancelled, fired or finished one is skipped when it reaches the top (lazy
deletion), and the heap is compacted when stale entries outnumber live ones.

On assignment it re-reads the partition from the beginning (that rebuilds the timers) and
issues node tasks only for `NodeScheduled` events at or after the committed offset (the
ones before were issued). Tasks are produced and the loop polls on; the `Committer` commits
the offset once they are acknowledged: at-least-once. A due timer is sent once per process
(per arming) as a `TimerFired` input with an id derived from (execution, timer), so a
re-sent timer is a duplicate the orchestrator drops.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import Counter, OrderedDict
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from flowlog.aggregates import records
from flowlog.aggregates.execution import events as dev
from flowlog.aggregates.execution.state import FINISHED_PHASES
from flowlog.schemas.codec import Codec
from flowlog.streams.runtime import policy
from flowlog.streams.runtime.admission import Entry
from flowlog.streams.runtime.commits import Committer, poll_loop
from flowlog.streams.runtime.kafka import catalog, partition_of, seek_to_start
from flowlog.streams.runtime.ports import Consumer, Definitions, FlowControl, Producer
from flowlog.streams.runtime.taskrender import TaskRenderer

from flowlog.observability import hooks
from flowlog.settings import Settings

log = logging.getLogger(__name__)

#: Finished execution ids remembered per partition, so a late re-written event of one is
#: recognised (not reported as a gap, not started again). Bounded: memory follows
#: unfinished executions.
FINISHED_MEMORY = 10_000
_KNOWN = frozenset(dev.EVENT_TYPES)
#: A timer as the aggregate keeps it, plus the arming's heap sequence number:
#: (kind, node_id, attempt, due_at, n). A heap entry is live while the execution's timer
#: under its id is this very tuple.
Timer = tuple[str, "str | None", "int | None", datetime, int]


class _Exec:
    """What the dispatcher keeps of one unfinished execution."""

    __slots__ = ("correlation_id", "items", "iters", "phase", "seq", "tenant", "timers",
                 "workflow_id", "workflow_version")

    def __init__(self) -> None:
        self.workflow_id = ""
        self.workflow_version = 0
        self.tenant = "default"
        self.correlation_id: str | None = None
        self.phase = "pending"
        self.seq = 0
        self.timers: dict[str, Timer] = {}
        self.items: dict[str, Any] | None = None  # loop iteration id -> item
        # loop iteration id -> (attempt, terminal): what `evolve` reads to disarm a timer
        self.iters: dict[str, tuple[int, bool]] | None = None

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_PHASES

    def identify(self, r: dict[str, Any]) -> None:
        self.workflow_id = r["workflow_id"]
        self.workflow_version = r["workflow_version"]
        self.tenant = r["tenant"]
        self.correlation_id = r["correlation_id"]

    def run(self, node_id: str, attempt: int, terminal: bool) -> None:
        if "[" in node_id:  # only loop iterations are ever read back
            if self.iters is None:
                self.iters = {}
            self.iters[node_id] = (attempt, terminal)


class _Partition:
    def __init__(self, resume_at: int) -> None:
        self.resume_at = resume_at  # committed offset: tasks before it were issued
        self.execs: dict[str, _Exec] = {}  # unfinished executions
        self.done: OrderedDict[str, None] = OrderedDict()  # recently finished (bounded)
        # armed timers by due time: (due timestamp, n, execution id, timer id, timer)
        self.heap: list[tuple[float, int, str, str, Timer]] = []
        self.compact_at = 1024
        self.limited: set[str] = set()  # executions under flow control (queued once)

    def finish(self, execution_id: str) -> None:
        self.execs.pop(execution_id, None)
        self.done[execution_id] = None
        if len(self.done) > FINISHED_MEMORY:
            self.done.popitem(last=False)

    def live(self, entry: tuple[float, int, str, str, Timer]) -> bool:
        x = self.execs.get(entry[2])
        return x is not None and x.timers.get(entry[3]) is entry[4]

    def compact(self) -> None:
        """Drop heap entries of timers no longer armed (cancelled, fired, finished)."""
        self.heap = [h for h in self.heap if self.live(h)]
        heapq.heapify(self.heap)
        self.compact_at = max(1024, 2 * len(self.heap))


class _Listener(ConsumerRebalanceListener):
    def __init__(self, owner: Dispatcher) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.owner.lock:
            await self.owner.committer.flush()  # tasks acked and offsets committed first
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
        self.parts: dict[int, _Partition] = {}
        self._arming = itertools.count()
        self.renderer = TaskRenderer(settings.executor_default_timeout_ms)
        self.lock = asyncio.Lock()
        self.stats: Counter[str] = Counter()
        self.commands_topic = cat.name("commands")
        self.partitions = cat.topics["commands"].partitions
        self.admission = admission
        self.consumer = consumer
        self.committer = Committer(self.consumer, "dispatcher",
                                   interval_s=settings.commit_interval_ms / 1000)

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
            part = self.parts.get(tp.partition)
            if part is None:
                continue
            hooks.records_in("dispatcher", tp.topic, len(msgs))
            touched: dict[str, _Exec] = {}
            for msg in msgs:
                try:
                    events = self.codec.decode(msg.value).record["events"]
                    for r in events:
                        if r["event_type"] not in _KNOWN:
                            raise records.WireError(f"{r['event_type']} is not an execution event")
                except Exception:
                    log.exception("unreadable execution-events record %s@%s", tp, msg.offset)
                    continue
                issue = policy.issues_tasks(msg.offset, part.resume_at)
                scope = hooks.enter("dispatcher issue", msg)  # tasks continue its trace
                for r in events:
                    x = await self._apply(part, tp.partition, r, issue, sends)
                    if x is None:
                        continue
                    execution_id = r["execution_id"]
                    if policy.flow_controlled(r["event_type"], execution_id in part.limited):
                        part.limited.add(execution_id)
                        touched[execution_id] = x
                hooks.leave(scope)
            if touched:
                await self._flow_control(part, touched, sends)
            if len(part.heap) > part.compact_at:
                part.compact()
            last = msgs[-1].offset + 1
            if last > part.resume_at:
                offsets[tp] = last
                part.resume_at = last
        hooks.records_out("dispatcher", self.tasks_topic, len(sends))
        if offsets or sends:  # committed by the committer once the tasks are acknowledged
            await self.committer.add(sends, offsets)

    async def _apply(self, part: _Partition, p: int, r: dict[str, Any], issue: bool,
                     sends: list[Any]) -> _Exec | None:
        """Fold one event record into what the dispatcher keeps; issue its task if due.

        Mirrors what `evolve` does to `state.timers`, phase and envelope, nothing else.
        Returns the execution's record (None: a re-written event of an execution that is
        finished or unknown).
        """
        execution_id = r["execution_id"]
        seq = r["seq"]
        x = part.execs.get(execution_id)
        step = policy.seq_step(None if x is None else x.seq, seq, execution_id in part.done)
        if step == "finished":
            return None  # a re-written or late event of a finished execution
        if step == "repeat":
            return x  # a re-written event already applied
        if step == "gap":
            log.error("dispatcher: gap in %s: seq %s after %s", execution_id, seq,
                      0 if x is None else x.seq)
            return x
        if x is None:
            x = part.execs[execution_id] = _Exec()
        x.seq = seq
        name = r["event_type"]
        if name == "NodeScheduled":
            x.run(r["node_id"], r["attempt"], False)
            if issue:
                sends.append(await self._issue(x, p, r))
        elif name in ("NodeSucceeded", "NodeFailed"):
            node_id, attempt = r["node_id"], r["attempt"]
            x.run(node_id, attempt, True)
            if x.timers:
                x.timers.pop(f"node_timeout:{node_id}:{attempt}", None)
        elif name == "TimerSet":
            n = next(self._arming)
            timer: Timer = (r["kind"], r["node_id"], r["attempt"], r["due_at"], n)
            x.timers[r["timer_id"]] = timer
            heapq.heappush(part.heap, (timer[3].timestamp(), n, execution_id, r["timer_id"],
                                       timer))
            if r["kind"] == "delay" and r["node_id"] is not None:
                x.run(r["node_id"], r["attempt"] or 1, False)
        elif name == "TimerFired":
            x.timers.pop(r["timer_id"], None)
        elif name in ("NodeStarted", "NodeRetryScheduled", "NodeDeadLettered"):
            x.run(r["node_id"], r["attempt"], False)
        elif name == "LoopIterationStarted":
            iter_id = f"{r['node_id']}[{r['index']}]"
            if x.items is None:
                x.items = {}
            item = r["item"]
            x.items[iter_id] = orjson.loads(item) if isinstance(item, str) else item
            if x.iters is None or r["node_id"] not in x.iters:
                x.run(r["node_id"], 1, False)
        elif name == "LoopIterationCompleted":
            iter_id = f"{r['node_id']}[{r['index']}]"
            known = x.iters.get(iter_id) if x.iters is not None else None
            if known is None or not known[1]:
                attempt = known[0] if known is not None else 0
                x.run(iter_id, attempt, True)
                if x.timers:
                    x.timers.pop(f"node_timeout:{iter_id}:{attempt}", None)
        elif name == "NodeSkipped":
            node_id = r["node_id"]
            known = x.iters.get(node_id) if x.iters is not None else None
            x.run(node_id, known[0] if known is not None else 0, True)
        elif name == "BranchDecided":
            x.run(r["node_id"], 1, True)
        elif name == "IncidentResolved":
            node_id = r["node_id"]
            if r["resolution"] == "resumed" and x.iters is not None and node_id in x.iters:
                x.run(node_id, x.iters[node_id][0], True)
        elif name == "ExecutionStarted":
            x.identify(r)
            x.phase = "active"
        elif name == "ExecutionQueued":
            x.identify(r)
            x.phase = "queued"
        elif name == "ExecutionRejected":
            x.identify(r)
            x.phase = "rejected"
        elif name == "ExecutionSucceeded":
            x.phase = "succeeded"
        elif name == "ExecutionFailed":
            x.phase = "failed"
        elif name == "ExecutionCancelled":
            x.phase = "cancelled"
        if x.phase in FINISHED_PHASES:
            part.finish(execution_id)  # its timers, items and the rest go with it
        return x

    async def _flow_control(self, part: _Partition, touched: dict[str, _Exec],
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

    async def _issue(self, x: _Exec, p: int, r: dict[str, Any]) -> Any:
        execution_id, node_id = r["execution_id"], r["node_id"]
        workflow_id, version = r["workflow_id"], r["workflow_version"]
        definition = self.registry.definition(workflow_id, version)
        if definition is None:
            await self.follower.catch_up(within=5.0)
            definition = self.registry.definition(workflow_id, version)
        self.stats["tasks"] += 1
        item = x.items.get(node_id) if x.items is not None else None
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
        """Send every armed timer whose due time has come, once per arming."""
        now_at = datetime.now(UTC)
        now = now_at.timestamp()
        sends = []
        for p, part in self.parts.items():
            heap = part.heap
            while heap and heap[0][0] <= now:
                entry = heapq.heappop(heap)
                if not part.live(entry):
                    continue  # cancelled, fired or finished since it was armed
                _, _, execution_id, timer_id, (kind, node_id, attempt, due_at, _n) = entry
                if due_at > now_at:
                    heapq.heappush(heap, entry)  # the float rounded it early: next tick
                    break
                x = part.execs[execution_id]
                record = records.timer_fired_record(
                    execution_id=execution_id, workflow_id=x.workflow_id,
                    workflow_version=x.workflow_version, tenant=x.tenant,
                    correlation_id=x.correlation_id, timer_id=timer_id, kind=kind,
                    node_id=node_id, attempt=attempt, due_at=due_at,
                    occurred_at=datetime.now(UTC))
                value = self.codec.encode("TimerFired", record)
                sends.append(await self.producer.send(
                    self.timers_topic, value=value, key=execution_id.encode(), partition=p,
                    headers=hooks.headers_for(execution_id)))
                self.stats["timers_fired"] += 1
        if sends:
            await asyncio.gather(*sends)
