"""The wire mapping: domain events and inputs through the real codec and back, unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flowlog.aggregates import records as wire
from flowlog.aggregates.execution import inputs as dinp
from flowlog.aggregates.execution.events import event_from_dict
from flowlog.schemas.codec import Codec
from flowlog.schemas.events import (
    EventReceived,
    ExecutionAdmitted,
    NodeResultReported,
    TimerFired,
    TriggerReceived,
)

pytestmark = pytest.mark.unit
HISTORIES = sorted((Path(__file__).resolve().parents[2] / "fixtures" / "histories").glob("*.json"))
CODEC = Codec()


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_recorded_histories_survive_the_batch_record(path: Path) -> None:
    events = [event_from_dict(e) for e in json.loads(path.read_text())["events"]]
    # one batch per causation (one decision), as the orchestrator writes them
    batches: list[list] = []
    for e in events:
        if batches and batches[-1][-1].causation_id == e.causation_id:
            batches[-1].append(e)
        else:
            batches.append([e])
    back = []
    for batch in batches:
        data = CODEC.encode("ExecutionEventBatch", wire.batch_record(batch, batch[0].causation_id))
        decoded = CODEC.decode(data)
        assert decoded.name == "ExecutionEventBatch"
        back += wire.batch_events(decoded.record)
    assert back == events


def _roundtrip(event: object) -> dinp.Input:
    name = type(event).__name__
    decoded = CODEC.decode(CODEC.encode(name, event.to_avro()))  # type: ignore[attr-defined]
    return wire.record_to_input(decoded.name, decoded.record)


def test_inputs_map_onto_domain_inputs() -> None:
    env = {"execution_id": "x1", "workflow_id": "w", "workflow_version": 1}
    trigger = TriggerReceived(workflow_id="w", workflow_version=0, source="manual",
                              input={"a": [1, 2]}, dedup_key="k")
    got = _roundtrip(trigger)
    assert isinstance(got, dinp.TriggerReceived)
    assert (got.execution_id, got.input, got.dedup_key, got.event_id) == (
        trigger.execution_id, {"a": [1, 2]}, "k", trigger.event_id)
    result = NodeResultReported(
        **env, node_id="n", attempt=2, task_key="x1:n:2", status="failed", output=None,
        error={"type": "Boom", "message": "no", "retryable": True},
        started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:00:01Z",
        model_calls=[{"provider": "p", "model": "m", "input_tokens": 1, "output_tokens": 2,
                      "cost_usd": 0.5, "latency_ms": 3}])
    got = _roundtrip(result)
    assert isinstance(got, dinp.NodeResultReported)
    assert (got.status, got.attempt, got.error, got.model_calls[0]["model"]) == (
        "failed", 2, {"type": "Boom", "message": "no", "retryable": True}, "m")
    timer = TimerFired(**env, timer_id="retry:n:1", kind="retry", node_id="n", attempt=1,
                       due_at="2026-01-01T00:00:00Z")
    assert isinstance(_roundtrip(timer), dinp.TimerFired)
    event = EventReceived(**env, event_name="quote.answered", payload={"ok": True})
    got = _roundtrip(event)
    assert isinstance(got, dinp.EventReceived) and got.payload == {"ok": True}
    assert isinstance(_roundtrip(ExecutionAdmitted(**env)), dinp.ExecutionAdmitted)


def test_a_non_input_is_refused() -> None:
    with pytest.raises(wire.WireError):
        wire.record_to_input("NodeTaskIssued", {"event_id": "e"})
