"""The eventsourcing wrappers: timestamps come from `now`, versions equal seq, replay works."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flowlog.aggregates.definition import load_definition
from flowlog.aggregates.definition.aggregate import WorkflowDefinition
from flowlog.aggregates.errors import DefinitionInvalid, InvalidTransition
from flowlog.aggregates.execution import inputs as I
from flowlog.aggregates.execution.aggregate import WorkflowExecution

from tests.support.runs import EXAMPLES, T0
from tests.support.scenarios import support_triage_billing

pytestmark = pytest.mark.unit


def test_definition_lifecycle() -> None:
    raw = load_definition(EXAMPLES / "bench-5node.yaml").raw
    wf = WorkflowDefinition.define(raw, timestamp=T0)
    assert (wf.status, wf.accepting, wf.latest_version) == ("draft", False, 1)
    wf.activate(timestamp=T0)
    v2 = wf.update({**raw, "name": "renamed"}, timestamp=T0 + timedelta(hours=1))
    assert v2 == 2 and wf.versions[1]["name"] == "Five no-op tools"
    assert wf.compiled(2).spec.name == "renamed" and wf.compiled(1).version == 1
    wf.pause("maintenance", timestamp=T0)
    assert not wf.accepting
    with pytest.raises(DefinitionInvalid):
        wf.update({"id": "bench-5node", "nodes": {}}, timestamp=T0)
    wf.archive(timestamp=T0)
    with pytest.raises(InvalidTransition):
        wf.activate(timestamp=T0)
    events = wf.collect_events()
    assert [type(e).__name__ for e in events] == [
        "WorkflowDefined", "WorkflowActivated", "WorkflowUpdated", "WorkflowPaused",
        "WorkflowArchived"]  # fmt: skip
    assert events[2].timestamp == T0 + timedelta(hours=1)
    copy = None
    for e in events:
        copy = e.mutate(copy)
    assert copy is not None and copy.versions == wf.versions and copy.status == "archived"


def test_execution_wrapper_matches_pure_fold() -> None:
    scripted = support_triage_billing()
    agg = None
    for at, inp in scripted.inputs:
        if isinstance(inp, I.TriggerReceived):
            agg = WorkflowExecution.start(inp, scripted.d, now=at)
        else:
            assert agg is not None
            agg.handle(inp, scripted.d, now=at)
    assert agg is not None
    assert agg.state.to_dict() == scripted.state.to_dict()
    recorded = agg.collect_events()
    assert [e.originator_version for e in recorded] == [e.seq for e in scripted.events]
    assert [e.timestamp for e in recorded] == [e.occurred_at for e in scripted.events]
    replayed = None
    for e in recorded:
        replayed = e.mutate(replayed)
    assert replayed is not None and replayed.state.to_dict() == agg.state.to_dict()
