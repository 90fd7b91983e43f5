"""The orchestrator: inputs in, one `ExecutionEventBatch` per decision out.

One consumer-group member reads triggers, commands, node-results and timers (co-partitioned:
the range assignor gives it the same partition numbers of all four). Per partition it
keeps the states of that partition's executions in a plain dict, rebuilt from the
execution-events partition before it decides anything for it, and dropped on revocation.

Per polled batch, under one lock (so a revocation waits for it): decode (quarantine the
bad), decide + evolve (the pure fold, no I/O), produce one record per decision to the same
partition number of execution-events, and hand the sends and the input offsets to the
`Committer`, which commits them once the broker acknowledged the sends, while the loop
polls again (no broker round trip on the loop's path). A crash anywhere before the commit
redelivers the inputs; the rebuilt state has their ids in `applied`, so they yield nothing,
or (if their decision never landed) the same decision again. A finished execution keeps
only a retired state: its identity, seq and applied input ids.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from flowlog.aggregates import records
from flowlog.aggregates.execution import ExecutionState, decide, evolve
from flowlog.schemas.guard import DecodeGuard
from flowlog.streams.runtime import policy
from flowlog.streams.runtime.commits import Committer, poll_loop
from flowlog.streams.runtime.inputs import resolve_input
from flowlog.streams.runtime.kafka import catalog
from flowlog.streams.runtime.memory import freeze_gc
from flowlog.streams.runtime.ports import Consumer, Definitions, PartitionReader, Producer
from flowlog.streams.runtime.window import FinishedWindow

from flowlog.observability import hooks
from flowlog.settings import Settings

log = logging.getLogger(__name__)
INPUT_TOPICS = ("triggers", "commands", "node-results", "timers")
FAULT_EXIT_CODE = 17


class _Listener(ConsumerRebalanceListener):
    def __init__(self, owner: Orchestrator) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.owner.lock:  # waits for the batch in progress (decided, written)
            await self.owner.committer.flush()  # acked and committed, before we let go
            for p in {tp.partition for tp in revoked}:
                self.owner.owned.discard(p)
                self.owner.states.pop(p, None)
                self.owner.finished.pop(p, None)
        log.info("orchestrator: revoked %s", sorted({tp.partition for tp in revoked}))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        async with self.owner.lock:
            self.owner.owned |= {tp.partition for tp in assigned}
        log.info("orchestrator: assigned %s", sorted({tp.partition for tp in assigned}))


class Orchestrator:
    """Built by the composition root (`compose.orchestrator`): ``definitions`` the registry
    and its follower, ``producer`` the process's idempotent producer, ``consumer`` a member
    of the `orchestrator` group over the four input topics, ``guard`` the decode guard (no
    pydantic on the hot path: the Avro decode already enforces the types, and
    `records.record_to_input` checks the fields the domain uses), ``read_events`` reads an
    execution-events partition whole (the rebuild)."""

    def __init__(self, settings: Settings, definitions: Definitions, producer: Producer, *,
                 consumer: Consumer, guard: DecodeGuard, read_events: PartitionReader
                 ) -> None:
        self.settings = settings
        self.follower = definitions
        self.registry = definitions.registry
        self.producer = producer
        self.guard = guard
        self.codec = self.guard.codec
        self.read_events = read_events
        cat = catalog(settings)
        self.input_topics = [cat.name(t) for t in INPUT_TOPICS]
        self.events_topic = cat.name("execution-events")
        self.states: dict[int, dict[str, ExecutionState]] = {}  # partition -> execution -> state
        # partition -> its last finished executions: beyond the window they leave memory
        # (their retired states deduplicate late inputs; bound and consequence: window.py)
        self.finished: dict[int, FinishedWindow] = {}
        self.window = settings.finished_window
        self.owned: set[int] = set()
        self.lock = asyncio.Lock()
        self.stats: Counter[str] = Counter()
        self.crash_after_write = settings.fault_crash_after_write
        self.commits_after_writes = 0  # fault injection: counted from this process's start
        self.consumer = consumer
        self.committer = Committer(self.consumer, "orchestrator",
                                   interval_s=settings.commit_interval_ms / 1000,
                                   on_commit_failed=self._forget,
                                   before_commit=self._maybe_crash)

    async def run(self) -> None:
        self.consumer.subscribe(self.input_topics, listener=_Listener(self))
        await self.consumer.start()
        await poll_loop(self.consumer, self.committer, self.lock, self._handle)

    def _forget(self, partitions: set[TopicPartition]) -> None:
        """A commit failed: another member may own these partitions now. Forget their
        states; the inputs are redelivered to the owner, who rebuilds from the log."""
        for tp in partitions:
            self.states.pop(tp.partition, None)
            self.finished.pop(tp.partition, None)

    def _maybe_crash(self, acked: int) -> None:
        """Fault tests: exit at the N-th commit that follows written decisions (a count,
        not a chance or a timer: the crash comes however slowly the process started)."""
        if not (acked and self.crash_after_write):
            return
        self.commits_after_writes += 1
        if self.commits_after_writes >= self.crash_after_write:
            log.warning("FAULT: exiting after writing %s decisions, before the commit", acked)
            os._exit(FAULT_EXIT_CODE)

    # --- recovery ----------------------------------------------------------------------------
    async def _load(self, partition: int) -> dict[str, ExecutionState]:
        """Fold the execution-events partition up to its end into fresh states."""
        await self.producer.flush()  # our own writes still in flight must be in the log
        states: dict[str, ExecutionState] = {}
        finished = self.finished[partition] = FinishedWindow(self.window)
        count = 0
        async for msg in self.read_events(self.events_topic, partition):
            try:
                record = self.codec.decode(msg.value).record
                events = records.batch_events(record)
            except Exception:
                log.exception("unreadable execution-events record %s@%s", partition, msg.offset)
                continue
            for e in events:
                state = states.get(e.execution_id)
                if state is None:
                    if e.execution_id in finished or e.seq != 1:
                        # an event after its execution left memory (or its history's start)
                        self.stats["rebuild_skipped_events"] += 1
                        continue
                    state = states[e.execution_id] = ExecutionState()
                if e.seq <= state.seq:
                    self.stats["rebuild_duplicate_events"] += 1
                    continue
                if e.seq != state.seq + 1:
                    log.error("gap in %s: seq %s after %s", e.execution_id, e.seq, state.seq)
                    continue
                evolve(state, e)
                count += 1
                if state.finished:
                    self._retire(states, finished, e.execution_id, state)
        self.stats["rebuilt_events"] += count
        freeze_gc(self.settings)  # the rebuilt states are lasting objects (memory.py)
        log.info("orchestrator: partition %s rebuilt: %s executions, %s events",
                 partition, len(states), count)
        return states

    def _retire(self, states: dict[str, ExecutionState], finished: FinishedWindow,
                execution_id: str, state: ExecutionState) -> None:
        """A finished execution keeps only what deduplicates its late inputs (its retired
        state), and only while it is in the partition's `FinishedWindow` (its bound and
        the consequence for late inputs: window.py)."""
        states[execution_id] = state.retired()
        for old in finished.add(execution_id):
            states.pop(old, None)
            self.stats["evicted"] += 1

    # --- the hot path ------------------------------------------------------------------------
    async def _handle(self, batches: dict[TopicPartition, list[Any]]) -> None:
        """Decide and send; the committer commits once the broker acknowledged the sends."""
        sends = []
        offsets: dict[TopicPartition, int] = {}
        for tp, msgs in batches.items():
            p = tp.partition
            if p not in self.owned:
                continue  # revoked while this batch was in flight: its new owner handles it
            states = self.states.get(p)
            if states is None:
                states = self.states[p] = await self._load(p)
            hooks.records_in("orchestrator", tp.topic, len(msgs))
            for msg in msgs:
                # trace hop and log context of this input (a trigger roots its execution's trace)
                scope = hooks.enter("orchestrator decide", msg,
                                    root=msg.topic == self.input_topics[0])
                try:
                    fut = await self._one(msg, p, states)
                finally:
                    hooks.leave(scope)
                if fut is not None:
                    sends.append(fut)
            offsets[tp] = msgs[-1].offset + 1
        if self.guard.stats.total() and any(k.startswith("quarantined") for k in self.guard.stats):
            await asyncio.to_thread(self.guard.flush)
        if offsets:
            hooks.records_out("orchestrator", self.events_topic, len(sends))
            await self.committer.add(sends, offsets)

    async def _one(self, msg: Any, p: int, states: dict[str, ExecutionState]) -> Any:
        accepted = self.guard.decode(msg)
        if accepted is None:
            self.stats["quarantined"] += 1
            return None
        name, record = accepted.name, accepted.record
        hooks.describe(record.get("workflow_id"), record.get("tenant"), name)
        try:
            execution_id = policy.input_execution_id(name, record, msg.key)
            state = states.get(execution_id) or ExecutionState()
            terms, definition, inp = await resolve_input(
                name, record, state, registry=self.registry, follower=self.follower,
                tenant_limit=self.settings.tenant_max_executions)
            events = decide(state, inp, datetime.now(UTC), definition,
                            accepting=terms.accepting, queue=terms.queue)
        except Exception as exc:  # a bad input or a bug: quarantine it, keep the partition going
            log.exception("input %s at %s@%s failed", name, msg.topic, msg.offset)
            hooks.error(exc)
            hooks.quarantined("orchestrator")
            self.guard.quarantine(msg, exc)
            self.stats["quarantined"] += 1
            return None
        if not events:
            reason = policy.no_events_reason(name, state.phase)
            if reason == "unknown_execution":
                # never expected: inputs follow their execution's trigger on this partition
                log.warning("orchestrator: %s for %s, which partition %s does not know",
                            name, execution_id, p)
            self.stats[reason] += 1
            return None
        for e in events:
            evolve(state, e)
        if state.finished:
            finished = self.finished.get(p)
            if finished is None:
                finished = self.finished[p] = FinishedWindow(self.window)
            self._retire(states, finished, execution_id, state)
        else:
            states[execution_id] = state
        self.stats["decisions"] += 1
        self.stats["events"] += len(events)
        hooks.decided(events, state.workflow_id, msg.timestamp)
        log.debug("orchestrator: %s decided: %s events", name, len(events))
        value = self.codec.encode("ExecutionEventBatch", records.batch_record(events, inp.event_id))
        return await self.producer.send(self.events_topic, value=value,
                                        key=execution_id.encode(), partition=p,
                                        headers=hooks.headers())
