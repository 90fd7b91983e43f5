"""One lifecycle for every reader of definition events (issue 8, item 3): the aggregate,
the engine's registry and `workflows apply` agree on what each event does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from flowlog.aggregates.definition.aggregate import WorkflowDefinition
from flowlog.aggregates.definition.lifecycle import transition
from flowlog.aggregates.errors import InvalidTransition
from flowlog.streams.runtime.registry import DefinitionRegistry

pytestmark = pytest.mark.unit
T = datetime(2025, 1, 1, tzinfo=UTC)
DEF = {"id": "w", "nodes": {"a": {"type": "transform", "output": "1"}}}


def test_the_transitions() -> None:
    assert transition(None, "WorkflowDefined") == "draft"
    assert transition("draft", "WorkflowUpdated") == "draft"
    assert transition("draft", "WorkflowActivated") == "active"
    assert transition("active", "WorkflowPaused") == "paused"
    assert transition("paused", "WorkflowActivated") == "active"
    assert transition("active", "WorkflowArchived") == "archived"
    assert transition("archived", "WorkflowArchived") == "archived"
    for event in ("WorkflowActivated", "WorkflowPaused", "WorkflowUpdated"):
        with pytest.raises(InvalidTransition, match="archived: cannot"):
            transition("archived", event, "w")
    with pytest.raises(InvalidTransition, match="not defined"):
        transition(None, "WorkflowActivated", "w")


def _record(name: str, **fields: Any) -> dict[str, Any]:
    return {"workflow_id": "w", "event_type": name, **fields}


@pytest.mark.parametrize("sequence", [
    ["WorkflowDefined", "WorkflowActivated", "WorkflowArchived", "WorkflowActivated"],
    ["WorkflowDefined", "WorkflowPaused", "WorkflowArchived", "WorkflowUpdated",
     "WorkflowPaused"],
    ["WorkflowDefined", "WorkflowActivated", "WorkflowPaused", "WorkflowActivated"],
])
def test_registry_and_aggregate_agree_on_every_sequence(sequence: list[str]) -> None:
    registry = DefinitionRegistry()
    agg: WorkflowDefinition | None = None
    version = 0
    for name in sequence:
        if name in ("WorkflowDefined", "WorkflowUpdated"):
            version += 1
            registry.apply(name, _record(name, version=version, definition=DEF))
        else:
            registry.apply(name, _record(name))
        try:
            if agg is None:
                agg = WorkflowDefinition.define(DEF, timestamp=T)
            elif name == "WorkflowUpdated":
                agg.update(DEF, timestamp=T)
            elif name == "WorkflowActivated":
                agg.activate(timestamp=T)
            elif name == "WorkflowPaused":
                agg.pause(timestamp=T)
            else:
                agg.archive(timestamp=T)
        except InvalidTransition:
            pass  # refused by the aggregate: the registry must have ignored it too
        assert registry.workflows["w"].status == agg.status, (name, sequence)
        assert registry.accepting("w") == agg.accepting
