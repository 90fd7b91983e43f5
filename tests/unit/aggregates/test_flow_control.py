"""Flow control in the domain: a limited workflow queues, `ExecutionAdmitted` starts it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flowlog.aggregates.definition import compile_definition, parse_definition
from flowlog.aggregates.execution import ExecutionState, decide, evolve
from flowlog.aggregates.execution import inputs as inp
from flowlog.aggregates.execution.state import ExecutionState as State

pytestmark = pytest.mark.unit
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _definition(limit: int | None = 2):  # type: ignore[no-untyped-def]
    raw = {"id": "limited", "inputs": {"n": {"type": "integer", "default": 1}},
           "nodes": {"a": {"type": "tool", "tool": "noop"}}}
    if limit is not None:
        raw["concurrency"] = {"max_executions": limit}
    return compile_definition(parse_definition(raw))


def _apply(state: ExecutionState, input_: inp.Input, **kw: object) -> list[str]:
    events = decide(state, input_, NOW, _definition(), **kw)  # type: ignore[arg-type]
    for e in events:
        evolve(state, e)
    return [e.event_type for e in events]


def _trigger() -> inp.TriggerReceived:
    return inp.TriggerReceived(event_id="t1", execution_id="x1", workflow_id="limited",
                               workflow_version=1, source="schedule", dedup_key="k")


def test_limited_workflow_queues_then_starts_when_admitted() -> None:
    state = ExecutionState()
    assert _apply(state, _trigger()) == ["ExecutionQueued"]
    assert state.status == "queued"
    assert _apply(state, inp.ExecutionAdmitted(event_id="a1")) == [
        "ExecutionStarted", "NodeScheduled"]
    assert state.status == "running"
    assert state.input == {"n": 1}
    assert _apply(state, inp.ExecutionAdmitted(event_id="a1")) == []  # redelivered
    assert _apply(state, inp.ExecutionAdmitted(event_id="a2")) == ["InputIgnored"]


def test_started_event_keeps_the_trigger_source_and_dedup_key() -> None:
    state = ExecutionState()
    _apply(state, _trigger())
    events = decide(state, inp.ExecutionAdmitted(event_id="a1"), NOW, _definition())
    started = events[0]
    assert started.event_type == "ExecutionStarted"
    assert (started.trigger_source, started.dedup_key) == ("schedule", "k")  # type: ignore[attr-defined]
    assert started.causation_id == "a1"


def test_cancel_while_queued() -> None:
    state = ExecutionState()
    _apply(state, _trigger())
    assert _apply(state, inp.CancelRequested(event_id="c1", reason="no")) == [
        "ExecutionCancelled"]
    assert _apply(state, inp.ExecutionAdmitted(event_id="a1")) == ["InputIgnored"]


def test_queue_flag_overrides_the_definition() -> None:
    state = ExecutionState()
    events = decide(state, _trigger(), NOW, _definition(None), queue=True)
    assert [e.event_type for e in events] == ["ExecutionQueued"]
    events = decide(ExecutionState(), _trigger(), NOW, _definition(2), queue=False)
    assert events[0].event_type == "ExecutionStarted"


def test_queued_state_survives_a_snapshot() -> None:
    state = ExecutionState()
    _apply(state, _trigger())
    restored = State.from_dict(state.to_dict())
    assert restored.to_dict() == state.to_dict()
    assert _apply(restored, inp.ExecutionAdmitted(event_id="a1"))[0] == "ExecutionStarted"


def test_validation_of_concurrency() -> None:
    from flowlog.aggregates.definition import validate_definition

    raw = {"id": "w", "concurrency": {"max_executions": 0, "other": 1},
           "nodes": {"a": {"type": "tool", "tool": "noop"}}}
    spec, issues = validate_definition(raw)
    assert spec is None
    assert {i.path for i in issues} == {"concurrency.max_executions", "concurrency.other"}
