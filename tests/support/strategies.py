"""Hypothesis strategies shared by the property tests: `dags` draws a random valid
definition (tools that fail a planned number of times, transforms, conditions, joins,
delays); `simulate` runs it, delivering every input the execution asks for in an order
the test's data picks, with redeliveries, second reports and late stale results."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flowlog.aggregates.definition.compiled import CompiledDefinition
from flowlog.aggregates.execution import ExecutionState, decide, evolve
from flowlog.aggregates.execution import inputs as I
from flowlog.aggregates.execution.events import ExecutionEvent
from hypothesis import strategies as st

from tests.support.runs import T0


@st.composite
def dags(draw: st.DrawFn) -> dict[str, Any]:
    """A random valid definition: tools (some failing), transforms, conditions, joins, delays."""
    n = draw(st.integers(2, 10))
    nodes: dict[str, Any] = {}
    for i in range(n):
        nid = f"n{i}"
        needs = sorted(draw(st.sets(st.sampled_from([f"n{j}" for j in range(i)]), max_size=3))
                       if i else set())  # fmt: skip
        kind = draw(st.sampled_from(["tool", "tool", "tool", "transform", "delay", "parallel",
                                     "condition"]))  # fmt: skip
        if kind == "parallel" and len(needs) < 2:
            kind = "tool"
        node: dict[str, Any] = {"type": kind, "needs": needs}
        if kind == "tool":
            node["tool"] = "t"
            node["input"] = {f"from_{d}": f"nodes.{d}.output" for d in needs[:2]}
            node["retry"] = {"max_attempts": draw(st.integers(1, 3)), "initial_delay": "1s"}
            node["on_failure"] = draw(st.sampled_from(["continue", "continue", "fail"]))
        elif kind == "transform":
            parts = ["inputs.x", *[f"nodes.{d}.status" for d in needs]]
            node["output"] = "[" + ", ".join(parts) + "]"
        elif kind == "delay":
            node["duration"] = draw(st.sampled_from(["1s", "5m"]))
        elif kind == "parallel":
            node["join"] = "all"
        elif kind == "condition":
            node["if"] = draw(st.sampled_from(["inputs.x > 1", "inputs.x < 1"]))
            node["then"], node["else"] = [], []
        nodes[nid] = node
    # Branch targets of a condition: its dependents, split between then and else.
    for cid, cnode in nodes.items():
        if cnode["type"] != "condition":
            continue
        for nid, node in nodes.items():
            if cid in node["needs"] and node["type"] != "parallel":
                cnode[draw(st.sampled_from(["then", "else"]))].append(nid)
    return {"id": "prop", "inputs": {"x": {"type": "integer", "default": 2}}, "nodes": nodes}


def fails_before_success(node_id: str) -> int:
    """How many attempts of a tool fail: a function of the node only, never of the order."""
    return sum(map(ord, node_id)) % 3


def simulate(d: CompiledDefinition, data: st.DataObject | None) -> tuple[ExecutionState, list]:
    """Deliver every input the execution asks for, in an order `data` picks (FIFO if None),
    with duplicates (same id: redelivery; new id: a second report) and late stale results."""
    state = ExecutionState()
    events: list[ExecutionEvent] = []
    now = T0
    pool: list[I.Input] = [I.TriggerReceived(event_id="trig", execution_id="e1",
                                             workflow_id=d.workflow_id, workflow_version=1)]
    steps = redelivered = 0
    while pool and steps < 500:
        steps += 1
        k = data.draw(st.integers(0, len(pool) - 1), label="pick") if data else 0
        inp = pool.pop(k)
        if data is not None:
            now += timedelta(milliseconds=data.draw(st.integers(0, 3000), label="dt"))
        new = decide(state, inp, now, d)
        if data is not None and new and data.draw(st.booleans(), label="check determinism"):
            assert new == decide(state, inp, now, d)
        for e in new:
            evolve(state, e)
        events.extend(new)
        for e in new:
            pool.extend(_follow_ups(e, data))
        if data is not None and redelivered < 10 and data.draw(st.booleans(), label="redeliver"):
            redelivered += 1
            pool.append(inp)  # redelivery of an input already applied
    assert not pool, "the run did not settle"
    return state, events


def _follow_ups(e: ExecutionEvent, data: st.DataObject | None) -> list[I.Input]:
    out: list[I.Input] = []
    if e.event_type == "NodeScheduled":
        assert isinstance(e, _types()["NodeScheduled"])
        ok = e.attempt > fails_before_success(e.node_id)
        res = I.NodeResultReported(
            event_id=f"res:{e.node_id}:{e.attempt}", node_id=e.node_id, attempt=e.attempt,
            status="succeeded" if ok else "failed",
            output={"node": e.node_id, "attempt": e.attempt} if ok else None,
            error=None if ok else {"type": "X", "message": "planned", "retryable": True},
        )
        out.append(res)
        if data is not None and data.draw(st.booleans(), label="second report"):
            # The executor reports the same attempt again (at-least-once), under a new id.
            out.append(I.NodeResultReported(
                event_id=f"dup:{e.node_id}:{e.attempt}", node_id=e.node_id, attempt=e.attempt,
                status=res.status, output=res.output, error=res.error))  # fmt: skip
    elif e.event_type == "TimerSet":
        t: Any = e
        out.append(I.TimerFired(event_id=f"fire:{t.timer_id}", timer_id=t.timer_id, kind=t.kind,
                                node_id=t.node_id, attempt=t.attempt, due_at=t.due_at))  # fmt: skip
    return out


def _types() -> dict[str, type]:
    from flowlog.aggregates.execution.events import EVENT_TYPES

    return EVENT_TYPES
