"""The dispatcher's own fold against the aggregate's `evolve`, without Kafka.

The dispatcher keeps only armed timers, phase, envelope and loop items per unfinished
execution, read straight from decoded batch records. Here every scripted example run and
random runs (any order, duplicates, retries, delays) go through the real codec into it,
event by event, and what it keeps must equal what `evolve` folds: `state.timers`, the
phase, and the node tasks that the full fold would render.
"""

from __future__ import annotations

import asyncio
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
from flowlog.streams.runtime import dispatcher as dmod
from flowlog.streams.runtime.dispatcher import Dispatcher, _Partition
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


def make(*definitions: CompiledDefinition) -> tuple[Dispatcher, FakeProducer]:
    producer = FakeProducer()
    disp = Dispatcher(Settings(topic_prefix="unit."), FakeFollower(*definitions),  # type: ignore[arg-type]
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


def armed(disp_timers: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """The dispatcher's timers in `state.timers`' shape."""
    return {tid: (k, n, a, due.isoformat()) for tid, (k, n, a, due, _) in disp_timers.items()}


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


async def check_against_evolve(d: CompiledDefinition, events: list[dev.ExecutionEvent]) -> None:
    disp, producer = make(d)
    part = disp.parts[0] = _Partition(0)
    state = ExecutionState()
    items: dict[str, Any] = {}
    want_tasks = []
    sends: list[Any] = []
    for batch in decisions(events):
        records = CODEC.decode(encoded(batch)).record["events"]
        for r, e in zip(records, batch, strict=True):
            await disp._apply(part, 0, r, True, sends)
            evolve(state, e)
            seen = wire.record_to_event(r)  # what the full-fold dispatcher worked on
            if isinstance(seen, dev.LoopIterationStarted):
                items[f"{seen.node_id}[{seen.index}]"] = seen.item
            if isinstance(seen, dev.NodeScheduled):
                want_tasks.append(expected_task(d, seen, items.get(seen.node_id),
                                                disp.settings.executor_default_timeout_ms))
            x = part.execs.get(e.execution_id)
            if state.finished:
                assert x is None and e.execution_id in part.done
                continue
            assert x is not None
            assert armed(x.timers) == state.timers, e
            assert (x.phase, x.seq, x.workflow_id, x.workflow_version, x.tenant,
                    x.correlation_id) == (state.phase, state.seq, state.workflow_id,
                                          state.workflow_version, state.tenant,
                                          state.correlation_id)
            # every armed timer has exactly one live heap entry
            live = [h for h in part.heap if part.live(h)]
            assert sorted(h[3] for h in live) == sorted(state.timers)
    await asyncio.gather(*sends)
    got = producer.records("node-tasks")
    assert [{k: t[k] for k in want} for t, want in zip(got, want_tasks, strict=True)] \
        == want_tasks
    assert not part.execs  # a finished execution leaves nothing behind but its id


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
    part = disp.parts[0] = _Partition(0)
    state = ExecutionState()
    sends: list[Any] = []
    fired_total = 0
    for batch in decisions(run.events):
        for r, e in zip(CODEC.decode(encoded(batch)).record["events"], batch, strict=True):
            await disp._apply(part, 0, r, True, sends)
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
        await disp._fire_due()
        assert not [t for t, _, _ in producer.sent[before + len(fired):]
                    if t.endswith("timers")], "a timer was sent twice"
    armings = sum(1 for e in run.events if isinstance(e, dev.TimerSet))
    spent_unfired = sum(1 for e in run.events if isinstance(e, dev.TimerSet)
                        and e.kind == "node_timeout")  # disarmed by the attempt's result
    assert 0 < fired_total <= armings
    assert fired_total >= armings - spent_unfired


async def test_future_timer_waits_and_finished_execution_drops_it() -> None:
    run = SCENARIOS["delay_and_wait_expired"]()
    disp, producer = make(run.d)
    part = disp.parts[0] = _Partition(0)
    sends: list[Any] = []
    shift = datetime.now(UTC) - T0 + timedelta(hours=1)  # due an hour from now
    batches = decisions(run.events)
    first = next(i for i, b in enumerate(batches)
                 if any(isinstance(e, dev.TimerSet) for e in b))
    for batch in batches[:first + 1]:
        for r in CODEC.decode(encoded(batch)).record["events"]:
            if r["event_type"] == "TimerSet":
                r["due_at"] += shift
            await disp._apply(part, 0, r, True, sends)
    assert [h for h in part.heap if part.live(h)]
    await disp._fire_due()
    assert not [t for t, _, _ in producer.sent if t.endswith("timers")]
    for batch in batches[first + 1:]:  # the rest, up to the execution's end
        for r in CODEC.decode(encoded(batch)).record["events"]:
            await disp._apply(part, 0, r, True, sends)
    assert not part.execs and part.heap  # entries left, none live
    assert not [h for h in part.heap if part.live(h)]
    part.compact()
    assert part.heap == []


async def test_rebuild_issues_tasks_only_from_the_committed_offset() -> None:
    run = SCENARIOS["batch_loop"]()
    disp, producer = make(run.d)
    msgs = [SimpleNamespace(offset=i, value=encoded(b))
            for i, b in enumerate(decisions(run.events))]
    cut = 3
    disp.parts[0] = _Partition(cut)
    tp = TopicPartition("events", 0)
    await disp._handle({tp: msgs})
    await disp.committer.flush()
    issued = [t["task_key"] for t in producer.records("node-tasks")]
    want = [e.task_key for i, b in enumerate(decisions(run.events)) if i >= cut
            for e in b if isinstance(e, dev.NodeScheduled)]
    assert issued == want and want
    assert disp.consumer.commits[-1][tp].offset == len(msgs)  # type: ignore[attr-defined]
    assert disp.parts[0].resume_at == len(msgs)
    # the whole log again (a re-written tail): nothing new is issued
    await disp._handle({tp: msgs})
    await disp.committer.stop()
    assert [t["task_key"] for t in producer.records("node-tasks")] == issued


async def test_memory_follows_unfinished_executions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dmod, "FINISHED_MEMORY", 5)
    d = SCENARIOS["bench_5node"]().d
    disp, producer = make(d)
    part = disp.parts[0] = _Partition(0)
    tp = TopicPartition("events", 0)
    offset = 0
    for n in range(20):
        run = SCENARIOS["bench_5node"]()
        run.execution_id = f"bench-{n}"
        # re-run with its own id: rebuild the run's events under the new execution id
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
        msgs = []
        for b in decisions(evs):
            msgs.append(SimpleNamespace(offset=offset, value=encoded(b)))
            offset += 1
        await disp._handle({tp: msgs})
        assert state.finished
    assert not part.execs
    assert list(part.done) == [f"bench-{n}" for n in range(15, 20)]
    assert len(producer.records("node-tasks")) == 20 * 5
    # a late re-written event of a remembered finished execution is ignored quietly
    before = len(producer.sent)
    await disp._handle({tp: msgs})
    assert len(producer.sent) == before and not part.execs


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
    disp.parts[0] = _Partition(0)
    tp = TopicPartition("events", 0)
    batches = decisions(events)
    await disp._handle({tp: [SimpleNamespace(offset=0, value=encoded(batches[0]))]})
    await disp._handle({tp: [SimpleNamespace(offset=i, value=encoded(b))  # type: ignore[dict-item]
                             for i, b in enumerate(batches[1:], 1)]})
    assert disp.admission.calls == [("enqueue", "x1"), ("release", "x1")]  # type: ignore[attr-defined]
    assert not disp.parts[0].limited and not disp.parts[0].execs

