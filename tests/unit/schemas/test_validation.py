"""Bad input at the SDK boundary is refused with the field, the value and the fix."""

from __future__ import annotations

from typing import Any

import pytest
from flowlog.schemas.errors import EventValidationError
from flowlog.schemas.events import (
    EVENT_TYPES,
    ExecutionEventBatch,
    NodeStarted,
    TriggerReceived,
    parse_event,
)
from flowlog.schemas.ids import execution_event_id, execution_id_for
from flowlog.schemas.sdk import prepare

pytestmark = pytest.mark.unit

TRIGGER = {"event_type": "TriggerReceived", "workflow_id": "wf", "workflow_version": 1,
           "source": "webhook", "input": {"order": 7}}


class _Producer:
    """The SDK's validation step (what EventProducer.publish runs first), without a broker."""

    prepare = staticmethod(prepare)


@pytest.fixture
def producer() -> _Producer:
    return _Producer()


@pytest.mark.parametrize("field", ["workflow_id", "workflow_version", "source", "input"])
def test_a_missing_required_field_is_named(producer: _Producer, field: str) -> None:
    data = {k: v for k, v in TRIGGER.items() if k != field}
    with pytest.raises(EventValidationError) as info:
        producer.prepare(data)
    assert info.value.field == field
    assert f"field '{field}' is required" in str(info.value)
    assert f"add the field '{field}'" in str(info.value)


def test_missing_fields_of_every_event_type_are_named() -> None:
    for name, cls in EVENT_TYPES.items():
        required = [f for f, info in cls.model_fields.items() if info.is_required()]
        if not required:
            continue
        with pytest.raises(EventValidationError) as info:
            parse_event({"event_type": name})
        assert info.value.field in required, name


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"source": "carrier-pigeon"}, "source", "webhook"),
        ({"workflow_version": "three"}, "workflow_version", "three"),
        ({"workflow_version": 2**40}, "workflow_version", "less than or equal"),
        ({"occurred_at": "2024-01-01T00:00:00"}, "occurred_at", "timezone"),
        ({"event_id": "not-a-uuid"}, "event_id", "not-a-uuid"),
        ({"colour": "blue"}, "colour", "remove the field"),
        ({"event_type": "TriggerRecieved"}, "event_type", "TriggerReceived"),
    ],
)
def test_bad_values_name_field_value_and_fix(
    producer: _Producer, change: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(EventValidationError) as info:
        producer.prepare({**TRIGGER, **change})
    assert info.value.field == field
    assert words in str(info.value)
    assert "Fix:" in str(info.value)


def test_dedup_key_derives_the_execution_id(producer: _Producer) -> None:
    event = producer.prepare({**TRIGGER, "dedup_key": "order-7"})
    assert isinstance(event, TriggerReceived)
    assert event.execution_id == execution_id_for("wf", "order-7")
    assert event.key == event.execution_id
    with pytest.raises(EventValidationError) as info:
        producer.prepare({**TRIGGER, "dedup_key": "order-7", "execution_id": "mine"})
    assert info.value.field == "execution_id"
    assert execution_id_for("wf", "order-7") in info.value.fix


def test_execution_events_need_a_seq() -> None:
    with pytest.raises(EventValidationError, match="seq"):
        NodeStarted(execution_id="e", workflow_id="w", workflow_version=1, node_id="n",
                    attempt=1)


def test_batches_must_be_contiguous_and_of_one_execution() -> None:
    def started(ex: str, seq: int) -> NodeStarted:
        return NodeStarted(event_id=execution_event_id(ex, seq), execution_id=ex,
                           workflow_id="w", workflow_version=1, seq=seq, node_id="n", attempt=1)

    ok = ExecutionEventBatch(execution_id="e", first_seq=3, last_seq=4,
                             events=[started("e", 3), started("e", 4)])
    assert ok.key == "e"
    with pytest.raises(EventValidationError, match="no gaps"):
        ExecutionEventBatch(execution_id="e", first_seq=3, last_seq=5,
                            events=[started("e", 3), started("e", 5)])
    with pytest.raises(EventValidationError, match="another execution"):
        ExecutionEventBatch(execution_id="e", first_seq=1, last_seq=2,
                            events=[started("e", 1), started("x", 2)])


def test_definition_events_key_by_workflow_and_check_the_version() -> None:
    ev = parse_event({"event_type": "WorkflowDefined", "workflow_id": "wf",
                      "workflow_version": 3, "version": 3, "definition": {"nodes": []}})
    assert ev.key == "wf" and ev.topic == "workflow-definitions" and ev.execution_id is None
    with pytest.raises(EventValidationError) as info:
        parse_event({"event_type": "WorkflowDefined", "workflow_id": "wf",
                     "workflow_version": 3, "version": 4, "definition": {}})
    assert info.value.field == "version"
