"""The dispatcher's state is the processor's `PartitionState`, folded by `evolve`; no Kafka.

Every scripted example run and random runs (any order, duplicates, retries, delays) go
through the real codec and the dispatcher's own batch handler, decision by decision. After
each batch, the execution's state the dispatcher holds must equal (a) what `evolve` folds
from the same events and (b) what the processor's rebuild folds from the same records
(`records.batch_events` + `PartitionState.replay`): timers, phase, seq, envelope, node runs
(its retired state once finished); its live heap entries must be its armed timers; the tasks
it issues must be the ones a full fold renders.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from flowlog.aggregates import records as wire
from flowlog.aggregates.definition import compile_definition, parse_definition
from flowlog.aggregates.definition.compiled import CompiledDefinition
from flowlog.aggregates.execution import ExecutionState, decide, evolve
from flowlog.aggregates.execution import events as dev
from flowlog.aggregates.execution import inputs as dinp
from flowlog.aggregates.execution.taskconfig import render_task_config
from flowlog.schemas.codec import Codec
from flowlog.schemas.model import canonical_json
from flowlog.streams.runtime.dispatcher import Dispatcher
from flowlog.streams.runtime.processor_state import PartitionState
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowlog.settings import Settings
from tests.support.runs import T0
from tests.support.scenarios import SCENARIOS
from tests.support.strategies import dags, simulate

pytestmark = pytest.mark.unit
CODEC = Codec()


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, int]] = []

    async def send(self, topic: str, value: bytes, key: bytes, partition: int,
                   headers: Any = None) -> Any:  # headers: trace context (observability)
        self.sent.append((topic, value, partition))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def records(self, topic_suffix: str) -> list[dict[str, Any]]:
        return [CODEC.decode(v).record for t, v, _ in self.sent if t.endswith(topic_suffix)]


class FakeRegistry:
    def __init__(self, *definitions: CompiledDefinition) -> None:
        self.defs = {(d.workflow_id, d.version): d for d in definitions}

    def definition(self, workflow_id: str, version: int) -> CompiledDefinition | None:
        return self.defs.get((workflow_id, version))


class FakeFollower:
    def __init__(self, *definitions: CompiledDefinition) -> None:
        self.registry = FakeRegistry(*definitions)

    async def catch_up(self, within: float = 10.0) -> bool:
        return True


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[Any, Any]] = []

    async def commit(self, offsets: dict[Any, Any]) -> None:
        self.commits.append(offsets)

    def assignment(self) -> Any:
        return _Everything()


class _Everything:
    def __contains__(self, item: object) -> bool:
        return True


class FakeAdmission:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def enqueue(self, entry: Any, limit: int | None) -> list[Any]:
        self.calls.append(("enqueue", entry.execution_id))
        return []

    async def release(self, entry: Any) -> list[Any]:
        self.calls.append(("release", entry.execution_id))
        return []


def make(*definitions: CompiledDefinition, window: int = 5_000
         ) -> tuple[Dispatcher, FakeProducer]:
    producer = FakeProducer()
    disp = Dispatcher(Settings(topic_prefix="unit.", finished_window=window),  # type: ignore[call-arg]
                      FakeFollower(*definitions),  # type: ignore[arg-type]
                      producer, consumer=FakeConsumer(), codec=CODEC,  # type: ignore[arg-type]
                      admission=FakeAdmission())
    disp.committer.start()  # as `run` does (the tests run in the event loop)
    return disp, producer


def decisions(events: list[dev.ExecutionEvent]) -> list[list[dev.ExecutionEvent]]:
    """One batch per decision (causation), as the orchestrator writes them."""
    batches: list[list[dev.ExecutionEvent]] = []
    for e in events:
        if batches and batches[-1][-1].causation_id == e.causation_id:
            batches[-1].append(e)
        else:
            batches.append([e])
    return batches


def encoded(batch: list[dev.ExecutionEvent]) -> bytes:
    return CODEC.encode("ExecutionEventBatch", wire.batch_record(batch, batch[0].causation_id))


def msgs_of(batches: list[list[dev.ExecutionEvent]], start: int = 0) -> list[Any]:
    return [SimpleNamespace(offset=i, value=encoded(b)) for i, b in enumerate(batches, start)]


def live_timers(part: PartitionState) -> list[tuple[str, str]]:
    """(execution, timer) of the heap entries still armed (lazy deletion skips the rest)."""
    out = []
    for _, eid, tid, due_iso in part.heap:
        s = part.states.get(eid)
        t = s.timers.get(tid) if s is not None and not s.finished else None
        if t is not None and t[3] == due_iso:
            out.append((eid, tid))
    return sorted(out)


def expected_task(d: CompiledDefinition, e: dev.NodeScheduled, item: Any,
                  default_timeout_ms: int) -> dict[str, Any]:
    """The task the earlier full-fold dispatcher rendered for `e`."""
    cnode = d.node(e.node_id)
    config = render_task_config(d, e.node_id, e.input if isinstance(e.input, dict)
                                else {"value": e.input}, execution_id=e.execution_id, item=item)
    timeout_ms = cnode.spec.timeout_ms or default_timeout_ms
    return {"event_id": wire.derived_id(e.task_key, "task"), "causation_id": e.event_id,
            "execution_id": e.execution_id, "node_id": e.node_id, "node_type": e.node_type,
            "attempt": e.attempt, "task_key": e.task_key, "input": canonical_json(e.input),
            "config": canonical_json(config), "timeout_ms": timeout_ms,
            "deadline_at": e.occurred_at + timedelta(milliseconds=timeout_ms),
            "occurred_at": e.occurred_at, "correlation_id": e.correlation_id,
            "tenant": e.tenant, "workflow_id": e.workflow_id,
            "workflow_version": e.workflow_version}


TP = TopicPartition("events", 0)


async def check_against_evolve(d: CompiledDefinition, events: list[dev.ExecutionEvent]) -> None:
    disp, producer = make(d)
    part = disp.assign(0, 0)
    rebuilt = PartitionState(0, 5_000)  # the processor's rebuild of the same records
    state = ExecutionState()
    items: dict[str, Any] = {}
    want_tasks = []
    for offset, batch in enumerate(decisions(events)):
        value = encoded(batch)
        await disp._handle({TP: [SimpleNamespace(offset=offset, value=value)]})
        for e in wire.batch_events(CODEC.decode(value).record):
            assert rebuilt.replay(e)
            if isinstance(e, dev.LoopIterationStarted):
                items[f"{e.node_id}[{e.index}]"] = e.item
            if isinstance(e, dev.NodeScheduled):
                want_tasks.append(expected_task(d, e, items.get(e.node_id),
                                                disp.settings.executor_default_timeout_ms))
        for e in batch:
            evolve(state, e)
        eid = batch[0].execution_id
        held = part.states[eid]
        assert held.to_dict() == rebuilt.states[eid].to_dict(), batch
        want = state.retired() if state.finished else state
        assert (held.timers, held.phase, held.seq, held.workflow_id, held.workflow_version,
                held.tenant, held.correlation_id) == (
            want.timers, want.phase, want.seq, want.workflow_id, want.workflow_version,
            want.tenant, want.correlation_id), batch
        assert {n: (r.status, r.attempt) for n, r in held.nodes.items()} == {
            n: (r.status, r.attempt) for n, r in want.nodes.items()}
        assert live_timers(part) == sorted((eid, t) for t in want.timers)
        assert part.items.get(eid) == rebuilt.items.get(eid)
    await disp.committer.stop()
    got = producer.records("node-tasks")
    assert [{k: t[k] for k in want} for t, want in zip(got, want_tasks, strict=True)] \
        == want_tasks
    assert len(got) == len(want_tasks)
    assert list(part.finished) == [events[0].execution_id]
    assert not part.items  # a finished execution keeps only its retired state


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_scripted_runs_fold_like_evolve(name: str) -> None:
    run = SCENARIOS[name]()
    await check_against_evolve(run.d, run.events)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=dags(), data=st.data())
def test_random_runs_fold_like_evolve(raw: dict[str, Any], data: st.DataObject) -> None:
    d = compile_definition(parse_definition(raw))
    _, events = simulate(d, data)
    asyncio.run(check_against_evolve(d, events))


async def test_due_timers_fire_once_per_arming_and_not_when_spent() -> None:
    run = SCENARIOS["webhook_dead_letter_then_retry"]()
    disp, producer = make(run.d)
    disp.assign(0, 0)
    state = ExecutionState()
    fired_total = 0
    for offset, batch in enumerate(decisions(run.events)):
        await disp._handle({TP: [SimpleNamespace(offset=offset, value=encoded(batch))]})
        await disp.committer.flush()
        for e in batch:
            evolve(state, e)
        before = len(producer.sent)
        await disp._fire_due()  # the scenario's due times are all in the past
        fired = [CODEC.decode(v).record for t, v, _ in producer.sent[before:]
                 if t.endswith("timers")]
        fired_total += len(fired)
        # exactly the armed timers not fired yet by this process
        assert {f["timer_id"] for f in fired} <= set(state.timers)
        for f in fired:
            kind, node_id, attempt, due_iso = state.timers[f["timer_id"]]
            assert (f["kind"], f["node_id"], f["attempt"], f["due_at"]) == (
                kind, node_id, attempt, datetime.fromisoformat(due_iso))
            assert f["event_id"] == wire.derived_id(f["execution_id"], f["timer_id"], "fired")
            assert (f["workflow_id"], f["correlation_id"], f["tenant"]) == (
                state.workflow_id, state.correlation_id, state.tenant)
        after = len(producer.sent)
        await disp._fire_due()
        assert not [t for t, _, _ in producer.sent[after:] if t.endswith("timers")], \
            "a timer was sent twice"
    armings = sum(1 for e in run.events if isinstance(e, dev.TimerSet))
    spent_unfired = sum(1 for e in run.events if isinstance(e, dev.TimerSet)
                        and e.kind == "node_timeout")  # disarmed by the attempt's result
    assert 0 < fired_total <= armings
    assert fired_total >= armings - spent_unfired


async def test_future_timer_waits_and_finished_execution_drops_it() -> None:
    run = SCENARIOS["delay_and_wait_expired"]()
    disp, producer = make(run.d)
    part = disp.assign(0, 0)
    shift = datetime.now(UTC) - T0 + timedelta(hours=1)  # due an hour from now
    batches = decisions(run.events)
    first = next(i for i, b in enumerate(batches)
                 if any(isinstance(e, dev.TimerSet) for e in b))
    shifted = [[replace(e, due_at=e.due_at + shift) if isinstance(e, dev.TimerSet) else e
                for e in b] for b in batches]
    await disp._handle({TP: msgs_of(shifted[:first + 1])})
    assert live_timers(part)
    await disp._fire_due()
    assert not [t for t, _, _ in producer.sent if t.endswith("timers")]
    await disp._handle({TP: msgs_of(shifted[first + 1:], first + 1)})  # up to the end
    assert part.states[run.events[0].execution_id].finished
    assert part.heap and not live_timers(part)  # entries left, none live
    assert part.due(datetime.now(UTC) + timedelta(days=3650)) == []  # skipped, not fired
    assert part.heap == []


async def test_rebuild_issues_tasks_only_from_the_committed_offset() -> None:
    run = SCENARIOS["batch_loop"]()
    disp, producer = make(run.d)
    msgs = msgs_of(decisions(run.events))
    cut = 3
    disp.assign(0, cut)
    await disp._handle({TP: msgs})
    await disp.committer.flush()
    issued = [t["task_key"] for t in producer.records("node-tasks")]
    want = [e.task_key for i, b in enumerate(decisions(run.events)) if i >= cut
            for e in b if isinstance(e, dev.NodeScheduled)]
    assert issued == want and want
    assert disp.consumer.commits[-1][TP].offset == len(msgs)  # type: ignore[attr-defined]
    assert disp.resume_at[0] == len(msgs)
    # the whole log again (a re-written tail): nothing new is issued
    await disp._handle({TP: msgs})
    await disp.committer.stop()
    assert [t["task_key"] for t in producer.records("node-tasks")] == issued


async def test_repeats_and_gaps_are_not_folded(caplog: pytest.LogCaptureFixture) -> None:
    run = SCENARIOS["bench_5node"]()
    disp, producer = make(run.d)
    part = disp.assign(0, 0)
    batches = decisions(run.events)
    eid = run.events[0].execution_id
    await disp._handle({TP: msgs_of(batches[:2])})
    seq = part.states[eid].seq
    await disp._handle({TP: msgs_of(batches[1:2], 2)})  # re-written: a repeat
    assert part.states[eid].seq == seq
    with caplog.at_level("ERROR", logger="flowlog.streams.runtime.dispatcher"):
        await disp._handle({TP: msgs_of(batches[3:4], 3)})  # skips batch 2: a gap
    assert part.states[eid].seq == seq
    assert [r.getMessage() for r in caplog.records] == [
        f"dispatcher: gap in {eid}: seq {e.seq} after {seq}" for e in batches[3]]
    await disp._handle({TP: msgs_of(batches[2:], 4)})  # the rest, in order
    await disp.committer.flush()
    assert part.states[eid].finished
    tasks = [t["task_key"] for t in producer.records("node-tasks")]
    assert tasks == [e.task_key for e in run.events if isinstance(e, dev.NodeScheduled)]


async def test_memory_follows_unfinished_executions() -> None:
    d = SCENARIOS["bench_5node"]().d
    disp, producer = make(d, window=5)
    part = disp.assign(0, 0)
    offset = 0
    msgs: list[Any] = []
    for n in range(20):
        # the run under its own id: its events decided again under the new execution id
        state, evs = ExecutionState(), []
        inputs = [dinp.TriggerReceived(event_id=f"t{n}", execution_id=f"bench-{n}",
                                       workflow_id=d.workflow_id, workflow_version=d.version)]
        while inputs:
            new = decide(state, inputs.pop(0), T0, d)
            for e in new:
                evolve(state, e)
                if isinstance(e, dev.NodeScheduled):
                    inputs.append(dinp.NodeResultReported(
                        event_id=f"r{n}{e.node_id}", node_id=e.node_id, attempt=e.attempt,
                        status="succeeded", output={}))  # fmt: skip
            evs += new
        msgs = msgs_of(decisions(evs), offset)
        offset += len(msgs)
        await disp._handle({TP: msgs})
        assert state.finished
    assert list(part.finished) == [f"bench-{n}" for n in range(15, 20)]
    assert sorted(part.states) == [f"bench-{n}" for n in range(15, 20)]
    assert all(s.finished and not s.nodes for s in part.states.values())  # retired
    assert not part.items and not live_timers(part)
    await disp.committer.flush()
    assert len(producer.records("node-tasks")) == 20 * 5
    # a late re-written event of a finished execution in the window is ignored quietly
    before = len(producer.sent)
    await disp._handle({TP: msgs})
    assert len(producer.sent) == before and len(part.states) == 5


async def test_flow_control_sees_queued_then_finished() -> None:
    raw = {"id": "limited", "inputs": {"n": {"type": "integer", "default": 1}},
           "concurrency": {"max_executions": 1},
           "nodes": {"a": {"type": "tool", "tool": "noop"}}}
    d = compile_definition(parse_definition(raw))
    state, events = ExecutionState(), []
    for inp in (dinp.TriggerReceived(event_id="t1", execution_id="x1", workflow_id="limited",
                                     workflow_version=1),
                dinp.ExecutionAdmitted(event_id="a1")):
        new = decide(state, inp, T0, d)
        for e in new:
            evolve(state, e)
        events += new
    sched = next(e for e in events if isinstance(e, dev.NodeScheduled))
    new = decide(state, dinp.NodeResultReported(event_id="r1", node_id="a", attempt=1,
                                                 status="succeeded", output={}), T0, d)
    events += new
    assert sched and new[-1].event_type == "ExecutionSucceeded"
    disp, _ = make(d)
    part = disp.assign(0, 0)
    batches = decisions(events)
    await disp._handle({TP: msgs_of(batches[:1])})
    await disp._handle({TP: msgs_of(batches[1:], 1)})
    assert disp.admission.calls == [("enqueue", "x1"), ("release", "x1")]  # type: ignore[attr-defined]
    assert not part.limited and part.states["x1"].finished
