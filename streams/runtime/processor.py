"""The processor (role `processor`, opt-in): the orchestrator as a transactional partition
processor, with its timers, tasks and admissions, in one atomic step per batch.

One consumer-group member (group `<prefix>processor`) reads triggers, commands,
node-results and timers (co-partitioned, range assignor, read_committed). Per assigned
partition p it owns a transactional producer with the id `<prefix>processor-<p>` and a
`PartitionState` (processor_state.py). Per polled batch, for each partition, in ONE Kafka
transaction:

* each input is decoded (the bad quarantined), decided (`decide`) and folded (`evolve`);
  the decision goes out as one `ExecutionEventBatch` record on execution-events p;
* every `NodeScheduled` of it becomes its `NodeTaskIssued` on node-tasks p (rendered by
  `taskrender.TaskRenderer`, the dispatcher's renderer), or the failed result of a task
  that cannot be issued;
* armed timers whose due time has come fire here, from the partition's own state (as
  Zeebe's due-date checker does): the `TimerFired` input (`records.timer_fired_record`) is
  decided like any other, no record goes through the timers topic;
* flow control: queued executions are enqueued, finished ones release their slot
  (`admission.Admission`, Redis), and the `ExecutionAdmitted` commands go to `commands`;
* the input offsets (`send_offsets_to_transaction`).

So decisions, tasks, fired timers and consumed inputs are committed together or not at all.

Fencing (EOS "alpha", Kafka Streams before KIP-447): aiokafka has only the v0 transaction
APIs (no consumer-group metadata in `TxnOffsetCommit`), so the transactional id is per
input partition. A new owner's `init_transactions` bumps the id's epoch: a previous owner
(e.g. a process paused past its session timeout) gets `ProducerFenced` on its next write or
commit, its open transaction is aborted, and read_committed consumers never see it. The
cost is one producer per owned partition.

Failure: a partition whose transaction fails drops its state; fenced, it waits for the
rebalance that gives the partition to its owner; otherwise it is re-opened at once
(re-initialised producer, state rebuilt, inputs re-read from the committed offsets).

Processing guarantee (`FLOWLOG_PROCESSING_GUARANTEE`, as Kafka Streams'
`processing.guarantee`): all of the above is `exactly_once`, the default. `at_least_once`
has no transactions: every partition writes with the process's idempotent producer (acks
all; no producer per partition, no `init_transactions` on open). A step decides as above,
sends its records without waiting for them and hands the sends and its input offsets to a
`Committer` (commits.py, as the orchestrator's): it awaits the acks in order and commits the
offsets after them, at most every `FLOWLOG_COMMIT_INTERVAL_MS`, while the partition's worker
goes on with its next step. A failed send ends the role (a restart rebuilds from the log); a
lost commit drops the partition's state (it is re-opened: rebuilt from snapshot + tail); a
revocation or stop flushes the committer (acks and commit) before the partitions go. A
snapshot is written once every record of the partition sent before it is acknowledged, its
`events_offset` taken from the last acknowledged events record: it never claims an event
the log does not hold. Duplicates after a crash are harmless as in the default roles: a
re-read input whose decision is in the log yields nothing (`decide`), a re-fired timer or a
re-sent admission has a deterministic id. A task can be lost, though: a crash after the
events record is acknowledged and before the tasks it caused are; the re-read input then
yields nothing. So a rebuild re-issues the task of every `NodeScheduled` read from the tail
beyond the snapshot whose attempt has no result yet (`PartitionState.unanswered`); its task
key is the same, so the executor drops it (running), re-publishes its result (finished in
that process) or runs it again with the same idempotency key (another process). Queued
executions are enqueued again on open, which re-sends an admission Redis already granted.
NOT fenced (as the orchestrator): a zombie owner (paused past its session timeout) can still
write after another member took its partitions.

Recovery: on assignment a partition's state is the latest snapshot
(`<prefix>processor-snapshots`, one compacted partition per input partition, written in
its own transaction every `FLOWLOG_PROCESSOR_SNAPSHOT_INTERVAL_S`) plus the execution-events
tail after the offset the snapshot covers; never the whole partition once a snapshot exists.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import InvalidProducerEpoch, ProducerFenced
from flowlog.aggregates import records
from flowlog.aggregates.execution import ExecutionState, decide
from flowlog.aggregates.execution import events as dev
from flowlog.aggregates.execution import inputs as dinp
from flowlog.schemas.guard import DecodeGuard
from flowlog.streams.runtime import policy
from flowlog.streams.runtime.admission import Entry
from flowlog.streams.runtime.commits import Committer
from flowlog.streams.runtime.inputs import resolve_input
from flowlog.streams.runtime.kafka import catalog, group_offsets, partition_of, read_partition
from flowlog.streams.runtime.memory import freeze_gc
from flowlog.streams.runtime.orchestrator import FAULT_EXIT_CODE
from flowlog.streams.runtime.ports import Consumer, Definitions, FlowControl, Producer
from flowlog.streams.runtime.processor_state import PartitionState
from flowlog.streams.runtime.taskrender import TaskRenderer

from flowlog.observability import hooks
from flowlog.settings import Settings

log = logging.getLogger(__name__)
INPUT_TOPICS = ("triggers", "commands", "node-results", "timers")
SNAPSHOTS = "processor-snapshots"
FENCED = (ProducerFenced, InvalidProducerEpoch)
#: A rebuild that replayed at least this many execution events writes a snapshot at once.
SNAPSHOT_AFTER_TAIL_EVENTS = 10_000
#: (topic, partition, key, value) of one record of a transaction
Out = tuple[str, int, bytes, bytes, "list[tuple[str, bytes]] | None"]  # + trace headers


def snapshots_topic(settings: Settings) -> str:
    return settings.topic_prefix + SNAPSHOTS


def ensure_snapshots_topic(settings: Settings) -> None:
    """The compacted snapshot topic: one partition per input partition (idempotent)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    name = snapshots_topic(settings)
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    if name in admin.list_topics(timeout=10).topics:
        return
    parts = catalog(settings).topics["execution-events"].partitions
    replication = min(3, len(admin.list_topics(timeout=10).brokers))
    fut = admin.create_topics([NewTopic(name, parts, replication, config={
        "cleanup.policy": "compact", "max.message.bytes": str(64 * 1024 * 1024),
        "segment.ms": "600000", "min.cleanable.dirty.ratio": "0.1"})])[name]
    try:
        fut.result(30)
    except Exception as exc:  # created by another process at the same time
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise


def encode_snapshot(state: PartitionState) -> bytes:
    return zlib.compress(orjson.dumps(state.to_snapshot()), 1)


def decode_snapshot(value: bytes, window: int) -> PartitionState:
    return PartitionState.from_snapshot(orjson.loads(zlib.decompress(value)), window)


@dataclass
class _Flow:
    """Flow-control work of one step: executions to enqueue and to release."""

    queued: list[ExecutionState] = field(default_factory=list)
    released: list[ExecutionState] = field(default_factory=list)


@dataclass
class _Part:
    """One owned partition: its state, producer, queued inputs and worker task."""

    p: int
    state: PartitionState
    producer: Any
    last_snapshot: float
    next: dict[TopicPartition, int]  # next input offset expected per input topic
    requeue: list[ExecutionState] = field(default_factory=list)
    queue: list[Any] = field(default_factory=list)  # polled inputs not yet in a transaction
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closing: bool = False
    paused: bool = False
    phase: str = "idle"  # what the worker awaits (a stalled step names it in the log)
    since: float = 0.0
    task: asyncio.Task[None] | None = None
    snapshot_now: bool = False  # rebuilt from a long tail: snapshot before the first step
    # at_least_once only
    reissue: list[Out] = field(default_factory=list)  # tasks of the tail to issue again
    sends: list[Any] = field(default_factory=list)  # sends not known to be acknowledged
    last_events: Any = None  # the send of the last events record
    stale: bool = False  # a commit was lost: rebuild before the next step


class _Listener(ConsumerRebalanceListener):
    def __init__(self, owner: Processor) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        ps = sorted({tp.partition for tp in revoked})
        # each worker ends its step in progress (committed or aborted) first
        async with self.owner.rebalance:
            await asyncio.gather(*(self.owner.close(p) for p in ps))
        log.info("processor: revoked %s", ps)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        ps = sorted({tp.partition for tp in assigned})
        async with self.owner.rebalance:
            await asyncio.gather(*(self.owner.open(p) for p in ps if p not in self.owner.parts))
        log.info("processor: assigned %s", ps)


class Processor:
    def __init__(self, settings: Settings, follower: Definitions, *, consumer: Consumer,
                 guard: DecodeGuard, admission: FlowControl,
                 txn_producer: Callable[[str], Producer] | None = None,
                 snapshot_reader: Callable[[], Any], producer: Producer | None = None
                 ) -> None:
        """Built by the composition root (`compose.processor`): ``consumer`` a member of the
        `processor` group (read_committed), ``txn_producer`` a transactional producer for a
        transactional id (exactly_once), ``producer`` the process's idempotent producer
        (at_least_once), ``snapshot_reader`` a group-less read_committed consumer,
        ``admission`` flow control (Redis; the root closes it)."""
        self.settings = settings
        self.eos = settings.processing_guarantee == "exactly_once"
        self.producer = producer
        self.follower = follower
        self.registry = follower.registry
        self.guard = guard
        self.txn_producer = txn_producer
        self.snapshot_reader = snapshot_reader
        self.codec = self.guard.codec
        cat = catalog(settings)
        self.input_topics = [cat.name(t) for t in INPUT_TOPICS]
        self.events_topic = cat.name("execution-events")
        self.tasks_topic = cat.name("node-tasks")
        self.results_topic = cat.name("node-results")
        self.commands_topic = cat.name("commands")
        self.snapshots_topic = snapshots_topic(settings)
        self.partitions = cat.topics["commands"].partitions
        self.group_id = settings.topic_prefix + "processor"
        self.parts: dict[int, _Part] = {}
        self._tails: dict[int, int] = {}  # partition -> events replayed by its last rebuild
        self.stats: Counter[str] = Counter()
        self.renderer = TaskRenderer(settings.executor_default_timeout_ms)
        self.admission = admission
        self.consumer = consumer
        self.pause_at = settings.fault_processor_pause_before_commit
        self._event_txns = 0
        self.tick_s = max(10, settings.timer_tick_ms) / 1000
        # a partition's queue beyond this pauses its fetching (memory, and a fair share)
        self.max_queued = 4 * settings.max_poll_records
        # at_least_once: offsets committed after the acks, off the partitions' workers
        self.crash_after_write = settings.fault_crash_after_write
        self.commits_after_writes = 0
        self.crash_before_tasks = settings.fault_processor_crash_before_tasks
        self._task_steps = 0
        self.committer = Committer(consumer, "processor",
                                   interval_s=settings.commit_interval_ms / 1000,
                                   max_pending=64, on_commit_failed=self._commit_lost,
                                   before_commit=self._maybe_crash)
        self._reissue: dict[int, list[dict[str, Any]]] = {}  # partition -> tail tasks
        # a rebalance's closes and opens, and a worker re-opening its partition, one at a time
        self.rebalance = asyncio.Lock()

    # --- the loop: polls and hands each partition's inputs to its worker ----------------------
    async def run(self) -> None:
        await asyncio.to_thread(ensure_snapshots_topic, self.settings)
        self.consumer.subscribe(self.input_topics, listener=_Listener(self))
        await self.consumer.start()
        if not self.eos:
            self.committer.start()
        try:
            while True:
                self.committer.raise_if_failed()  # a failed send ends the role (restart)
                batches = await self.consumer.getmany(timeout_ms=int(self.tick_s * 1000))
                for tp, msgs in batches.items():
                    part = self.parts.get(tp.partition)
                    if part is None or part.closing or not msgs:
                        continue  # not (or no longer) ours: the owner reads them
                    expected = part.next.get(tp, 0)
                    fresh = [m for m in msgs if m.offset >= expected]  # none twice
                    if not fresh:
                        continue
                    part.next[tp] = fresh[-1].offset + 1
                    part.queue += fresh
                    hooks.records_in("processor", tp.topic, len(fresh))
                    part.wake.set()
                    if len(part.queue) > self.max_queued and not part.paused:
                        part.paused = True
                        self._fetching(part.p, False)
                now = time.monotonic()
                for part in self.parts.values():  # a dead worker ends the role (restart)
                    if part.task is not None and part.task.done() and not part.closing:
                        part.task.result()
                    if part.phase != "idle" and now - part.since > 10:
                        log.warning("processor: partition %s: %s for %.0f s", part.p,
                                    part.phase, now - part.since)
                        part.since = now
                if any(k.startswith("quarantined") for k in self.guard.stats):
                    await asyncio.to_thread(self.guard.flush)
        finally:
            try:
                await asyncio.gather(*(self.close(p) for p in list(self.parts)))
                if not self.eos:
                    await asyncio.wait_for(self.committer.stop(), 30)
            finally:
                await self.consumer.stop()

    def _tps(self, p: int) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t in self.input_topics]

    def _fetching(self, p: int, on: bool) -> None:
        """Pause or resume fetching partition p (quietly, if it is no longer assigned)."""
        try:
            if on:
                self.consumer.resume(*self._tps(p))
            else:
                self.consumer.pause(*self._tps(p))
        except Exception:
            log.debug("processor: partition %s not assigned", p, exc_info=True)

    async def _work(self, part: _Part) -> None:
        """One partition's worker: one transaction per round, holding every input queued
        since the last one and every timer due; the loop polls on meanwhile."""
        if part.snapshot_now and not part.closing:
            part.snapshot_now = False
            if not await self._snapshot(part):
                return
        while not part.closing:
            if part.stale:  # a lost commit (at_least_once): rebuild from the log
                await self._reopen(part, "its offset commit was lost")
                return
            due = part.state.next_due()
            if not part.queue and not part.requeue and not part.reissue and (
                    due is None or due > time.time()):
                wait = self.tick_s if due is None else min(self.tick_s,
                                                            max(0.0, due - time.time()))
                part.wake.clear()
                try:
                    await asyncio.wait_for(part.wake.wait(), wait)
                except TimeoutError:
                    pass
                continue
            msgs, part.queue = part.queue, []
            if part.paused and not part.closing:
                part.paused = False
                self._fetching(part.p, True)
            t0 = time.perf_counter()
            part.since = time.monotonic()
            part.phase = "deciding"
            ok = await self._step(part, msgs)
            part.phase = "idle"
            if not ok:
                return  # failed: the partition was closed (and re-opened unless fenced)
            self.stats["step_us"] += int((time.perf_counter() - t0) * 1e6)
            self.stats["steps"] += 1
            self.stats["inputs"] += len(msgs)

    # --- partitions -------------------------------------------------------------------------
    async def open(self, p: int) -> None:
        """Own partition p: fence its previous owner, rebuild its state, position the inputs
        at the committed offsets, start its worker (at_least_once: no producer of its own,
        nothing fenced)."""
        started = time.monotonic()
        if self.eos:
            assert self.txn_producer is not None, "exactly_once needs transactional producers"
            producer = self.txn_producer(f"{self.settings.topic_prefix}processor-{p}")
            await producer.start()
            # init_transactions: bumps the epoch (fences the previous owner) and waits until
            # its open transaction, if any, is aborted; only then are the log and offsets stable
            await asyncio.shield(producer._txn_manager.wait_for_pid())
            log.info("processor: partition %s: producer %s initialised in %.2f s", p,
                     producer._txn_manager.transactional_id, time.monotonic() - started)
        else:
            assert self.producer is not None, "at_least_once needs the process's producer"
            producer = self.producer
        state = await self._load(p)
        reissue = await self._tasks_again(p, state)
        tps = self._tps(p)
        # one round trip for every input topic at once (one after the other took ~0.3 s
        # each on a loaded machine: most of a snapshot start)
        found = await asyncio.gather(*(self.consumer.committed(tp) for tp in tps))
        missing = [tp for tp, c in zip(tps, found, strict=True) if c is None]
        # never committed by this group: where the classic layout's orchestrator got to (a
        # deployment moving to the processor goes on from there), else the first offset
        taken = await group_offsets(self.settings, "orchestrator", missing)
        if taken:
            log.info("processor: partition %s: takes over the orchestrator group's offsets %s",
                     p, {tp.topic.rsplit(".", 1)[-1]: o for tp, o in taken.items()})
        missing = [tp for tp in missing if tp not in taken]
        begins = await self.consumer.beginning_offsets(missing) if missing else {}
        nexts: dict[TopicPartition, int] = {
            tp: c if c is not None else taken.get(tp, begins.get(tp, 0))
            for tp, c in zip(tps, found, strict=True)}
        # from here to the registration no await: the poll loop must not see an input of p
        # positioned by these seeks before the partition is there to take it
        for tp, committed in nexts.items():
            self.consumer.seek(tp, committed)
        log.info("processor: partition %s: inputs at %s", p,
                 {tp.topic.rsplit(".", 1)[-1]: o for tp, o in nexts.items()})
        part = _Part(p, state, producer, time.monotonic(), nexts)
        part.requeue = [s for s in state.states.values() if s.phase == "queued"]
        part.reissue = reissue
        # a long rebuild is written down at once, so the next owner starts from it even if
        # this one never takes a step (no traffic) before it stops
        part.snapshot_now = (self.settings.processor_snapshot_interval_s > 0
                             and self._tails.pop(p, 0) >= SNAPSHOT_AFTER_TAIL_EVENTS)
        self.parts[p] = part
        self._fetching(p, True)
        part.task = asyncio.create_task(self._work(part), name=f"processor-{p}")
        self.stats["opened"] += 1
        log.info("processor: partition %s ready in %.2f s (%s executions, %s finished kept)",
                 p, time.monotonic() - started, len(state), len(state.finished))

    async def close(self, p: int) -> None:
        """Let go of partition p: its worker ends its step in progress, then its producer
        stops. Inputs queued and not yet in a transaction are dropped (re-read by the owner
        from the committed offsets)."""
        part = self.parts.pop(p, None)
        if part is None:
            return
        part.closing = True
        part.wake.set()
        task = part.task
        if task is not None and task is not asyncio.current_task():
            try:
                await task
            except Exception:
                log.warning("processor: worker of partition %s ended on an error", p,
                            exc_info=True)
        if not self.eos:
            # its writes acknowledged and its offsets committed before the partition goes (a
            # failed send is raised by the role's loop: `raise_if_failed`)
            try:
                await self.committer.flush()
            except Exception:
                log.warning("processor: flushing the commits of partition %s failed", p,
                            exc_info=True)
            return
        try:
            await asyncio.wait_for(part.producer.stop(), 10)
        except Exception:
            log.warning("processor: producer of partition %s did not stop cleanly", p,
                        exc_info=True)

    async def _load(self, p: int) -> PartitionState:
        window = self.settings.finished_window
        state = None
        snap = await self._read_snapshot(p)
        if snap is not None:
            try:
                state = decode_snapshot(snap, window)
                self.stats["snapshot_loads"] += 1
            except Exception:
                log.exception("processor: snapshot of partition %s unreadable; full rebuild", p)
        if state is None:
            state = PartitionState(p, window)
        tail = 0
        # at_least_once: the tail's NodeScheduled records, by execution and node (a finished
        # execution's leave): their tasks may not be in node-tasks (`_tasks_again`)
        scheduled: dict[str, dict[str, dict[str, Any]]] | None = None if self.eos else {}
        async for msg in read_partition(self.settings, self.events_topic, p,
                                        start=state.events_offset):
            state.events_offset = msg.offset + 1
            try:
                wire = self.codec.decode(msg.value).record
                events = records.batch_events(wire)
            except Exception:
                log.exception("unreadable execution-events record %s@%s", p, msg.offset)
                continue
            for e, r in zip(events, wire["events"], strict=True):
                if state.replay(e):
                    tail += 1
                    if scheduled is None:
                        continue
                    if isinstance(e, dev.NodeScheduled):
                        scheduled.setdefault(e.execution_id, {})[e.node_id] = r
                    elif e.execution_id in state.finished:
                        scheduled.pop(e.execution_id, None)
                else:
                    self.stats["rebuild_skipped_events"] += 1
        if scheduled:
            self._reissue[p] = state.unanswered(scheduled)
        self.stats["rebuilt_events"] += tail
        self._tails[p] = tail
        freeze_gc(self.settings)
        log.info("processor: partition %s: snapshot %s + %s tail events", p,
                 "yes" if snap is not None else "none", tail)
        return state

    async def _read_snapshot(self, p: int) -> bytes | None:
        """The last committed snapshot record of partition p (None: no snapshot yet)."""
        tp = TopicPartition(self.snapshots_topic, p)
        consumer = self.snapshot_reader()
        await consumer.start()
        try:
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            begin = (await consumer.beginning_offsets([tp]))[tp]
            last = None
            for start in (max(begin, end - 8), begin):  # a snapshot + marker take 2 offsets
                if end <= start:
                    break
                consumer.seek(tp, start)
                pos = start
                while pos < end:
                    got = await consumer.getmany(tp, timeout_ms=2000)
                    if not got:
                        pos = await consumer.position(tp)
                        if pos >= end:
                            break
                        continue
                    for msg in got.get(tp, ()):
                        pos = msg.offset + 1
                        if msg.value is not None:
                            last = msg.value
                    pos = max(pos, await consumer.position(tp))
                if last is not None or start == begin:
                    break
            return last
        finally:
            await consumer.stop()

    # --- one step: one transaction per partition --------------------------------------------
    async def _step(self, part: _Part, msgs: list[Any]) -> bool:
        """One step: the inputs, the due timers, their writes and the offsets (one
        transaction, or at_least_once pipelined through the committer)."""
        st = part.state
        out: list[Out] = part.reissue
        part.reissue = []
        flow = _Flow(queued=part.requeue)
        part.requeue = []
        offsets: dict[TopicPartition, int] = {}
        try:
            for msg in msgs:
                # trace hop and log context of this input (a trigger roots its execution's trace)
                scope = hooks.enter("processor decide", msg,
                                    root=msg.topic == self.input_topics[0])
                try:
                    await self._one(msg, st, out, flow)
                finally:
                    hooks.leave(scope)
                offsets[TopicPartition(msg.topic, msg.partition)] = msg.offset + 1
            now = datetime.now(UTC)
            for eid, timer_id, timer in st.due(now):
                self._fire(st, eid, timer_id, timer, now, out, flow)
            if flow.queued or flow.released:
                await self._flow_control(flow, out)
            if not out and not offsets:
                return True
            if self.eos:
                await self._transaction(part, out, offsets)
        except Exception as exc:
            await self._failed(part, exc)
            return False
        if not self.eos:
            # outside the handler: a send that fails ends the role (the state may count
            # records some of which are in the log: only a restart's rebuild is safe)
            await self._send(part, out, offsets)
        interval = self.settings.processor_snapshot_interval_s
        if interval > 0 and time.monotonic() - part.last_snapshot >= interval:
            return await self._snapshot(part)
        return True

    async def _transaction(self, part: _Part, out: list[Out],
                           offsets: dict[TopicPartition, int]) -> None:
        """exactly_once: the step's records and input offsets in one transaction."""
        st = part.state
        t_txn = time.perf_counter()
        producer = part.producer
        part.phase = "beginning the transaction"
        await producer.begin_transaction()
        part.phase = "sending"
        sends = []
        for topic, partition, key, value, headers in out:
            fut = await producer.send(topic, value=value, key=key, partition=partition,
                                      headers=headers)
            if topic == self.events_topic:
                sends.append(fut)
        if offsets:
            part.phase = "sending offsets to the transaction"
            await producer.send_offsets_to_transaction(offsets, self.group_id)
        if sends and self.pause_at:
            await self._maybe_pause(sends)
        part.phase = "committing"
        await producer.commit_transaction()
        for topic, n in Counter(o[0] for o in out).items():
            hooks.records_out("processor", topic, n)
        if sends:
            st.events_offset = (await sends[-1]).offset + 1
        self.stats["transactions"] += 1
        self.stats["txn_us"] += int((time.perf_counter() - t_txn) * 1e6)
        self.stats["records"] += len(out)

    async def _send(self, part: _Part, out: list[Out], offsets: dict[TopicPartition, int]
                    ) -> None:
        """at_least_once: send the step's records (not awaited) and hand them with the input
        offsets to the committer; the worker goes on at once."""
        producer = self.producer
        assert producer is not None
        if self.crash_before_tasks and any(o[0] == self.tasks_topic for o in out):
            await self._maybe_crash_before_tasks(out)
        part.phase = "sending"
        sends = []
        for topic, partition, key, value, headers in out:
            fut = await producer.send(topic, value=value, key=key, partition=partition,
                                      headers=headers)
            sends.append(fut)
            if topic == self.events_topic:
                part.last_events = fut
        if sends:
            # an acknowledged send leaves; a failed one stays, so a snapshot raises it
            part.sends = [f for f in part.sends if not f.done() or f.cancelled()
                          or f.exception() is not None] + sends
        part.phase = "handing the step to the committer"
        await self.committer.add(sends, offsets)
        for topic, n in Counter(o[0] for o in out).items():
            hooks.records_out("processor", topic, n)
        self.stats["records"] += len(out)

    async def _maybe_crash_before_tasks(self, out: list[Out]) -> None:
        """Fault tests: exit at the N-th step issuing tasks, its events records acknowledged
        and its tasks never sent (the task a rebuild must issue again)."""
        self._task_steps += 1
        if self._task_steps < self.crash_before_tasks:
            return
        assert self.producer is not None
        sends = [await self.producer.send(t, value=v, key=k, partition=n, headers=h)
                 for t, n, k, v, h in out if t == self.events_topic]
        await asyncio.gather(*sends)
        log.warning("FAULT: exiting with %s events records acknowledged, before their tasks",
                    len(sends))
        os._exit(FAULT_EXIT_CODE)

    def _maybe_crash(self, acked: int) -> None:
        """Fault tests (at_least_once): exit at the N-th commit that follows written records,
        after their acks and before the commit (as the orchestrator's)."""
        if not (acked and self.crash_after_write):
            return
        self.commits_after_writes += 1
        if self.commits_after_writes >= self.crash_after_write:
            log.warning("FAULT: exiting after writing %s records, before the commit", acked)
            os._exit(FAULT_EXIT_CODE)

    def _commit_lost(self, partitions: set[TopicPartition]) -> None:
        """at_least_once: a commit failed (the group rebalanced): the states of these
        partitions count inputs another member may re-read; each is rebuilt by its worker."""
        for tp in partitions:
            part = self.parts.get(tp.partition)
            if part is not None:
                part.stale = True
                part.wake.set()

    async def _reopen(self, part: _Part, why: str) -> None:
        """at_least_once: drop a partition's state and rebuild it (from its own worker),
        unless a revocation is closing it already (the assignment re-opens it then)."""
        p = part.p
        if self.parts.get(p) is not part or part.closing:
            return
        self.stats["reopened"] += 1
        log.warning("processor: partition %s: %s; rebuilding it", p, why)
        await self.close(p)  # from its own worker: does not wait for itself
        async with self.rebalance:  # not beside a rebalance's opens: one owner per partition
            if p not in self.parts and (
                    TopicPartition(self.input_topics[0], p) in self.consumer.assignment()):
                await self.open(p)

    async def _tasks_again(self, p: int, state: PartitionState) -> list[Out]:
        """at_least_once: the tasks of the tail's unanswered `NodeScheduled` records, as
        `_decide` renders them (same task keys)."""
        found = self._reissue.pop(p, [])
        out: list[Out] = []
        now = datetime.now(UTC)
        for r in found:
            eid = r["execution_id"]
            definition = self.registry.definition(r["workflow_id"], r["workflow_version"])
            if definition is None:
                await self.follower.catch_up(within=5.0)
                definition = self.registry.definition(r["workflow_id"], r["workflow_version"])
            name, task = self.renderer.render(r, definition, state.item(eid, r["node_id"]), now)
            topic = self.tasks_topic if name == "NodeTaskIssued" else self.results_topic
            out.append((topic, p, eid.encode(), self.codec.encode(name, task),
                        hooks.headers_for(eid)))
        if out:
            self.stats["tasks_reissued"] += len(out)
            log.info("processor: partition %s: %s tasks of the tail issued again", p, len(out))
        return out

    async def _maybe_pause(self, sends: list[Any]) -> None:
        """Fault injection: stop this process with its transaction open, writes in the log."""
        self._event_txns += 1
        if self._event_txns == self.pause_at:
            await asyncio.gather(*sends)  # acknowledged: in the log, in the open transaction
            log.warning("FAULT: stopping (SIGSTOP) before committing transaction %s",
                        self._event_txns)
            os.kill(os.getpid(), signal.SIGSTOP)
            log.warning("FAULT: resumed; committing the transaction opened before the stop")

    async def _snapshot(self, part: _Part) -> bool:
        part.last_snapshot = time.monotonic()
        if not self.eos:
            await self._snapshot_acked(part)
            return True
        value = encode_snapshot(part.state)
        try:
            await part.producer.begin_transaction()
            await part.producer.send(self.snapshots_topic, value=value,
                                     key=str(part.p).encode(), partition=part.p)
            await part.producer.commit_transaction()
            self.stats["snapshots"] += 1
            self.stats["snapshot_bytes"] = len(value)
        except Exception as exc:
            await self._failed(part, exc)
            return False
        return True

    async def _snapshot_acked(self, part: _Part) -> None:
        """at_least_once: once every record of the partition sent so far is acknowledged,
        the state with `events_offset` after the last events record. A failed send raises:
        it ends the role (the committer would raise it as well)."""
        assert self.producer is not None
        pending, part.sends = part.sends, []
        part.phase = "awaiting the acks a snapshot covers"
        if pending:
            await asyncio.gather(*pending)
        if part.last_events is not None:
            acked = part.last_events.result()  # aiokafka's metadata, or confluent's Message
            offset = acked.offset() if callable(acked.offset) else acked.offset
            part.state.events_offset = max(part.state.events_offset, offset + 1)
        value = encode_snapshot(part.state)
        part.phase = "writing a snapshot"
        fut = await self.producer.send(self.snapshots_topic, value=value,
                                       key=str(part.p).encode(), partition=part.p)
        await fut
        part.phase = "idle"
        self.stats["snapshots"] += 1
        self.stats["snapshot_bytes"] = len(value)

    async def _failed(self, part: _Part, exc: Exception) -> None:
        """A transaction failed: the state counts writes the log does not hold; drop it.
        (at_least_once: a step failed before its sends were handed over, e.g. Redis: the
        state counts decisions the log may not hold; rebuilt the same way.)"""
        p = part.p
        if not self.eos:
            await self._reopen(part, f"a step failed ({exc!r})")
            return
        fenced = isinstance(exc, FENCED) or "fenced" in str(exc).lower()
        self.stats["fenced" if fenced else "transaction_failures"] += 1
        if not fenced:
            try:
                await asyncio.wait_for(part.producer.abort_transaction(), 10)
            except Exception:
                log.debug("abort failed", exc_info=True)
        if self.parts.get(p) is part:
            await self.close(p)  # from its own worker: does not wait for itself
        if fenced:
            log.warning("processor: partition %s fenced (%s): another member owns it now; its "
                        "transaction is aborted", p, exc)
            self._fetching(p, False)
        else:
            log.warning("processor: transaction of partition %s failed (%r); re-opening it",
                        p, exc)
            await self.open(p)

    async def _one(self, msg: Any, st: PartitionState, out: list[Out], flow: _Flow) -> None:
        accepted = self.guard.decode(msg)
        if accepted is None:
            self.stats["quarantined"] += 1
            return
        name, record = accepted.name, accepted.record
        hooks.describe(record.get("workflow_id"), record.get("tenant"), name)
        try:
            # the orchestrator's rules and glue (policy.py, inputs.py)
            execution_id = policy.input_execution_id(name, record, msg.key)
            state = st.get(execution_id)
            terms, definition, inp = await resolve_input(
                name, record, state, registry=self.registry, follower=self.follower,
                tenant_limit=self.settings.tenant_max_executions)
            self._decide(st, state, name, inp, definition, terms.accepting, terms.queue, out,
                         flow, msg=msg)
        except Exception as exc:  # a bad input or a bug: quarantine it, keep the partition going
            log.exception("input %s at %s@%s failed", name, msg.topic, msg.offset)
            hooks.error(exc)
            hooks.quarantined("processor")
            self.guard.quarantine(msg, exc)
            self.stats["quarantined"] += 1

    def _fire(self, st: PartitionState, eid: str, timer_id: str,
              timer: tuple[str, str | None, int | None, str], now: datetime,
              out: list[Out], flow: _Flow) -> None:
        state = st.get(eid)
        kind, node_id, attempt, due_iso = timer
        record = records.timer_fired_record(
            execution_id=eid, workflow_id=state.workflow_id,
            workflow_version=state.workflow_version, tenant=state.tenant,
            correlation_id=state.correlation_id, timer_id=timer_id, kind=kind,
            node_id=node_id, attempt=attempt, due_at=datetime.fromisoformat(due_iso),
            occurred_at=now)
        inp = records.record_to_input("TimerFired", record)
        definition = self.registry.definition(state.workflow_id, state.workflow_version)
        self.stats["timers_fired"] += 1
        scope = hooks.enter_execution("processor timer", eid)  # in the execution's own trace
        hooks.describe(state.workflow_id, state.tenant, "TimerFired")
        try:
            self._decide(st, state, "TimerFired", inp, definition, True, None, out, flow)
        finally:
            hooks.leave(scope)

    def _decide(self, st: PartitionState, state: ExecutionState, name: str, inp: dinp.Input,
                definition: Any, accepting: bool, queue: bool | None, out: list[Out],
                flow: _Flow, msg: Any = None) -> None:
        now = datetime.now(UTC)
        events = decide(state, inp, now, definition, accepting=accepting, queue=queue)
        if not events:
            self.stats[policy.no_events_reason(name, state.phase)] += 1
            return
        was_limited = state.execution_id in st.limited
        state = st.apply(state, events)
        eid = state.execution_id
        self.stats["decisions"] += 1
        self.stats["events"] += len(events)
        hooks.decided(events, state.workflow_id, msg.timestamp if msg is not None else None,
                      "processor")
        log.debug("processor: %s decided: %s events", type(inp).__name__, len(events))
        p = st.partition
        key = eid.encode()
        headers = hooks.headers()
        batch = records.batch_record(events, inp.event_id)
        out.append((self.events_topic, p, key, self.codec.encode("ExecutionEventBatch", batch),
                    headers))
        for e, r in zip(events, batch["events"], strict=True):
            if isinstance(e, dev.NodeScheduled):
                definition = self.registry.definition(e.workflow_id, e.workflow_version)
                name, task = self.renderer.render(r, definition, st.item(eid, e.node_id), now)
                topic = self.tasks_topic if name == "NodeTaskIssued" else self.results_topic
                out.append((topic, p, key, self.codec.encode(name, task), headers))
                self.stats["tasks"] += 1
            elif isinstance(e, dev.ExecutionQueued):
                flow.queued.append(state)
        if state.finished and (was_limited or eid in st.limited):
            flow.released.append(state)
            st.limited.discard(eid)

    async def _flow_control(self, flow: _Flow, out: list[Out]) -> None:
        """Queue what waits, release what ended; admit whoever got a slot (in the step's
        transaction). Redis is not in the transaction: every step is idempotent, and a
        partition re-opened re-enqueues its queued executions (re-sends a lost admission)."""
        admitted: list[Entry] = []
        for s in flow.queued:  # the dispatcher's rules (policy.py)
            entry = policy.admission_entry(s.execution_id, s.workflow_id, s.workflow_version,
                                           s.tenant)
            limit = policy.workflow_limit(self.registry.definition(s.workflow_id,
                                                                   s.workflow_version))
            admitted += await self.admission.enqueue(entry, limit)
        for s in flow.released:
            entry = policy.admission_entry(s.execution_id, s.workflow_id, s.workflow_version,
                                           s.tenant)
            admitted += await self.admission.release(entry)
        now = datetime.now(UTC)
        for entry in admitted:
            self.stats["admitted"] += 1
            record = records.admitted_record(
                execution_id=entry.execution_id, workflow_id=entry.workflow_id,
                workflow_version=entry.workflow_version, tenant=entry.tenant, occurred_at=now)
            out.append((self.commands_topic, partition_of(entry.execution_id, self.partitions),
                        entry.execution_id.encode(),
                        self.codec.encode("ExecutionAdmitted", record),
                        hooks.headers_for(entry.execution_id)))
