"""Property tests: random valid DAGs, results in random order, duplicated and delayed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flowlog.aggregates.definition import compile_definition, parse_definition
from flowlog.aggregates.definition.compiled import CompiledDefinition
from flowlog.aggregates.execution import ExecutionState, decide, fold
from flowlog.aggregates.execution import inputs as I
from flowlog.aggregates.execution.events import ExecutionEvent, event_from_dict, event_to_dict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.runs import T0, canonical
from tests.support.strategies import dags, simulate

pytestmark = pytest.mark.unit
SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])  # fmt: skip


def summary(state: ExecutionState, d: CompiledDefinition) -> Any:
    """The order-independent outcome. After a failure only the outcome itself counts:
    which other nodes finished first depends on the order results arrived in."""
    if state.phase == "failed":
        return canonical({"phase": state.phase, "error": state.error})
    nodes = {}
    for nid, cnode in d.nodes.items():
        run = state.nodes[nid]
        output = None if cnode.spec.type == "delay" else run.output
        nodes[nid] = [run.status, run.attempt, output]
    return canonical({"phase": state.phase, "output": state.output, "nodes": nodes})


def check_history(d: CompiledDefinition, events: list[ExecutionEvent]) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len({e.event_id for e in events}) == len(events)
    done: set[str] = set()
    succeeded: set[tuple[str, int]] = set()
    finished_at = None
    for e in events:
        f: Any = e
        if e.event_type in ("NodeScheduled", "NodeStarted", "NodeSucceeded", "BranchDecided",
                            "LoopIterationStarted", "TimerSet") and getattr(f, "node_id", None):
            node = d.nodes.get(f.node_id)
            if node is not None and not (e.event_type == "TimerSet" and f.kind != "delay"):
                missing = [n for n in node.spec.needs if n not in done]
                assert not missing, f"{f.node_id} started before its needs {missing}"
        if e.event_type == "NodeSucceeded":
            key = (f.node_id, f.attempt)
            assert key not in succeeded, f"{key} succeeded twice"
            succeeded.add(key)
        if e.event_type in ("NodeSucceeded", "NodeSkipped", "BranchDecided", "NodeFailed"):
            done.add(f.node_id)
        if e.event_type in ("NodeRetryScheduled", "NodeDeadLettered"):
            done.discard(f.node_id)
        if finished_at is not None:
            assert e.event_type == "InputIgnored", f"{e.event_type} after the execution ended"
        if e.event_type.startswith("Execution") and e.event_type != "ExecutionStarted":
            finished_at = e.seq


@SETTINGS
@given(raw=dags(), data=st.data())
def test_any_order_and_duplication_ends_in_the_same_state(raw: dict, data: st.DataObject) -> None:
    d = compile_definition(parse_definition(raw))
    reference, _ = simulate(d, None)
    assert reference.finished
    state, events = simulate(d, data)
    assert state.finished
    assert summary(state, d) == summary(reference, d)
    check_history(d, events)
    # Replaying the event list (through the JSON codec) reproduces the state.
    replayed = fold(event_from_dict(json.loads(json.dumps(event_to_dict(e)))) for e in events)
    assert replayed.to_dict() == state.to_dict()
    # A snapshot (JSON) at any point plus the tail equals the full replay.
    cut = data.draw(st.integers(0, len(events)), label="snapshot at")
    snap = json.loads(json.dumps(fold(events[:cut]).to_dict()))
    resumed = fold(events[cut:], ExecutionState.from_dict(snap))
    assert resumed.to_dict() == state.to_dict()


@SETTINGS
@given(raw=dags())
def test_redelivered_input_changes_nothing(raw: dict) -> None:
    d = compile_definition(parse_definition(raw))
    state, events = simulate(d, None)
    for e in events:
        assert e.causation_id in state.applied
    before = state.to_dict()
    trigger = I.TriggerReceived(event_id="trig", execution_id="e1", workflow_id="prop",
                                workflow_version=1)  # fmt: skip
    assert decide(state, trigger, T0, d) == []
    assert state.to_dict() == before
