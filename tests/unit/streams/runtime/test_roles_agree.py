"""The orchestrator and the processor decide every input the same way.

The per-input rules (version pin, accepting, tenant queue, catch-up, key check, why an
input decided nothing) are tested once, table by table, in test_role_policy.py. This test
fails if one of the two roles stops following them: both roles, built with fakes (no I/O),
get the same inputs against the same registry, and must write the same decisions (events
compared without their timestamps), count the same outcome and ask for the same catch-ups.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from flowlog.aggregates import records
from flowlog.schemas import events as ev
from flowlog.schemas.codec import Codec
from flowlog.schemas.guard import DecodeGuard
from flowlog.streams.runtime.orchestrator import Orchestrator
from flowlog.streams.runtime.processor import Processor, _Flow
from flowlog.streams.runtime.processor_state import PartitionState
from flowlog.streams.runtime.registry import DefinitionRegistry

from flowlog.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.unit
CODEC = Codec()
DAG = yaml.safe_load((REPO_ROOT / "examples" / "bench-5node.yaml").read_text())
OUTCOMES = ("decisions", "duplicates", "unknown_execution", "quarantined")


def registry() -> DefinitionRegistry:
    r = DefinitionRegistry()
    for wid, versions, lifecycle in [("wf", (1, 2), ("WorkflowActivated",)),
                                     ("wf-paused", (1,), ("WorkflowActivated",
                                                          "WorkflowPaused")),
                                     ("wf-draft", (1,), ())]:
        for v in versions:
            r.apply("WorkflowDefined", {"workflow_id": wid, "version": v,
                                        "definition": {**DAG, "id": wid}})
        for name in lifecycle:
            r.apply(name, {"workflow_id": wid, "reason": "test"})
    return r


class Follower:
    """The registry's follower: a catch-up finds the workflow `wf-late` defined meanwhile."""

    def __init__(self) -> None:
        self.registry = registry()
        self.catch_ups = 0

    async def catch_up(self, within: float = 10.0) -> bool:
        self.catch_ups += 1
        if "wf-late" not in self.registry.workflows:
            self.registry.apply("WorkflowDefined", {"workflow_id": "wf-late", "version": 1,
                                                    "definition": {**DAG, "id": "wf-late"}})
            self.registry.apply("WorkflowActivated", {"workflow_id": "wf-late"})
        return True


class Sink:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, key: bytes | None, value: bytes) -> None:
        self.sent.append(key)

    def flush(self, timeout: float = 30.0) -> None:
        return None


class Producer:
    def __init__(self) -> None:
        self.values: list[bytes] = []

    async def send(self, topic: str, *, value: bytes, **kwargs: Any) -> None:
        self.values.append(value)

    async def flush(self) -> None:
        return None


class Admission:
    async def enqueue(self, entry: Any, limit: int | None) -> list[Any]:
        return []

    async def release(self, entry: Any) -> list[Any]:
        return []


async def no_events(topic: str, p: int) -> AsyncIterator[Any]:
    for _ in ():
        yield None


class Pair:
    """An orchestrator and a processor over one partition, each with its own registry."""

    def __init__(self, tenant_limit: int) -> None:
        s = Settings(topic_prefix="unit.", tenant_max_executions=tenant_limit)
        self.o_follower, self.p_follower = Follower(), Follower()
        self.producer = Producer()
        self.o = Orchestrator(s, self.o_follower, self.producer,  # type: ignore[arg-type]
                              consumer=SimpleNamespace(),  # type: ignore[arg-type]
                              guard=DecodeGuard(CODEC, Sink(), validate=False),
                              read_events=no_events)
        self.o.owned.add(0)
        self.o_states = self.o.states[0] = {}
        self.p = Processor(s, self.p_follower, consumer=SimpleNamespace(),  # type: ignore[arg-type]
                           guard=DecodeGuard(CODEC, Sink(), validate=False),
                           admission=Admission(), txn_producer=lambda _: None,  # type: ignore[arg-type,return-value]
                           snapshot_reader=lambda: None)
        self.st = PartitionState(0, s.finished_window)

    async def orchestrator(self, msg: Any) -> tuple[list[Any], Counter[str], int]:
        before = Counter({k: self.o.stats[k] for k in OUTCOMES})
        self.producer.values.clear()
        await self.o._one(msg, 0, self.o_states)
        return (decided(self.producer.values), outcome(self.o.stats, before),
                self.o_follower.catch_ups)

    async def processor(self, msg: Any) -> tuple[list[Any], Counter[str], int]:
        before = Counter({k: self.p.stats[k] for k in OUTCOMES})
        out: list[Any] = []
        await self.p._one(msg, self.st, out, _Flow())
        batches = [o[3] for o in out if o[0] == self.p.events_topic]
        return decided(batches), outcome(self.p.stats, before), self.p_follower.catch_ups


def outcome(stats: Counter[str], before: Counter[str]) -> Counter[str]:
    return Counter({k: stats[k] - before[k] for k in OUTCOMES if stats[k] != before[k]})


def untimed(value: Any) -> Any:
    """A decided event without its times (each role reads its own clock)."""
    if isinstance(value, datetime):
        return "<time>"
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [untimed(v) for v in value]
    return value


def decided(values: list[bytes]) -> list[Any]:
    return [[(type(e).__name__, untimed(dataclasses.asdict(e)))
             for e in records.batch_events(CODEC.decode(v).record)] for v in values]


def msg(event: ev.Event, key: str | None = None, offset: int = 0) -> Any:
    return SimpleNamespace(topic=f"unit.{event.topic}", partition=0, offset=offset,
                           key=(key if key is not None else event.execution_id).encode(),
                           value=CODEC.encode_event(event), timestamp=1_700_000_000_000,
                           headers=[])


def trigger(workflow_id: str = "wf", version: int = 0, execution_id: str = "ex-1",
            event_id: str | None = None) -> ev.TriggerReceived:
    extra = {"event_id": event_id} if event_id else {}
    return ev.TriggerReceived(workflow_id=workflow_id, workflow_version=version,
                              execution_id=execution_id, source="manual", input={}, **extra)


def cancel(execution_id: str = "ex-1") -> ev.CancelRequested:
    return ev.CancelRequested(execution_id=execution_id, workflow_id="wf", workflow_version=0,
                              reason="test")


def task(execution_id: str = "ex-1") -> ev.NodeTaskIssued:
    return ev.NodeTaskIssued(execution_id=execution_id, workflow_id="wf", workflow_version=1,
                             node_id="A", node_type="tool", attempt=1, task_key="k", input={},
                             config={}, timeout_ms=1000,
                             deadline_at=datetime.now(UTC) + timedelta(minutes=1))


SAME_ID = "00000000-0000-7000-8000-000000000001"
CASES: dict[str, tuple[int, list[Any]]] = {
    "pins the newest version": (0, [msg(trigger())]),
    "keeps the version it names": (0, [msg(trigger(version=1))]),
    "a version the registry does not hold": (0, [msg(trigger(version=7))]),
    "paused: rejected": (0, [msg(trigger("wf-paused"))]),
    "draft: rejected": (0, [msg(trigger("wf-draft"))]),
    "unknown: catches up, rejected": (0, [msg(trigger("nope"))]),
    "defined a moment ago: catches up, accepted": (0, [msg(trigger("wf-late"))]),
    "a tenant limit queues": (2, [msg(trigger())]),
    "the same trigger twice: a duplicate": (0, [msg(trigger(event_id=SAME_ID)),
                                                msg(trigger(event_id=SAME_ID), offset=1)]),
    "a second trigger of a started execution": (0, [msg(trigger()), msg(trigger(), offset=1)]),
    "a cancel uses the pinned version": (0, [msg(trigger(version=1)), msg(cancel(), offset=1)]),
    "a cancel of an unknown execution": (0, [msg(cancel("ex-9"))]),
    "keyed wrong: quarantined": (0, [msg(trigger(), key="ex-2")]),
    "not an input: quarantined": (0, [msg(task())]),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_the_processor_decides_as_the_orchestrator(case: str) -> None:
    tenant_limit, msgs = CASES[case]
    pair = Pair(tenant_limit)
    for m in msgs:
        by_orchestrator = await pair.orchestrator(m)
        by_processor = await pair.processor(m)
        assert by_processor == by_orchestrator, case
    # the cases mean something: every one decides, drops or quarantines something
    assert by_orchestrator[0] or by_orchestrator[1]
