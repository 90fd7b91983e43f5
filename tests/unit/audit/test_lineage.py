"""Lineage trees: what an event caused and what caused it, on every example's history."""

from __future__ import annotations

from typing import Any

import pytest
from flowlog.projections.audit import lineage

from tests.support.histories import HISTORIES, IDS, History, history, renamed

pytestmark = pytest.mark.unit


def _ids(node: dict[str, Any], kind: str = "event") -> list[str]:
    out = [node["id"]] if node["kind"] == kind else []
    for child in node["children"]:
        out += _ids(child, kind)
    return out


def _labels(node: dict[str, Any]) -> list[str]:
    out = [node["label"]]
    for child in node["children"]:
        out += _labels(child)
    return out


@pytest.mark.parametrize("h", HISTORIES, ids=IDS)
def test_the_execution_tree_holds_every_event_once(h: History) -> None:
    tree = lineage.Graph(h.events).forward().to_dict()
    assert sorted(_ids(tree)) == sorted(e.event_id for e in h.events)


@pytest.mark.parametrize("h", HISTORIES, ids=IDS)
def test_every_event_is_reached_from_what_caused_it(h: History) -> None:
    g = lineage.Graph(h.events)
    for e in h.events:
        chain = g.backward(e.event_id).to_dict()
        assert chain["kind"] == "input"  # the chain starts at an input ...
        node = chain
        while node["children"]:
            node = node["children"][0]
        assert node["id"] == e.event_id  # ... and ends at the event
        assert e.event_id in _ids(g.forward(chain["id"]).to_dict())


def test_a_retry_by_hand_is_traced_back_through_the_incident_to_the_trigger() -> None:
    h = history("fixture:webhook_dead_letter_then_retry")
    g = lineage.Graph(h.events)
    last_attempt = next(e for e in h.events
                        if e.event_type == "NodeScheduled" and e.attempt == 4)
    labels = _labels(g.backward(last_attempt.event_id).to_dict())
    assert labels[0].startswith("TriggerReceived webhook-retry-deadletter")
    assert "RetryNodeRequested notify (operator command)" in labels
    assert any(label.startswith("IncidentRaised") for label in labels)
    assert any(label.startswith("TimerFired retry:notify:1") for label in labels)
    assert labels[-1].startswith("NodeScheduled node_id=notify attempt=4")
    # forward: the operator command caused the fourth attempt, its result and the end
    caused = _labels(g.forward("dlq-retry-1").to_dict())
    assert any(label.startswith("ExecutionSucceeded") for label in caused)


def test_child_executions_hang_under_their_subworkflow_node() -> None:
    h = history("scenario:subworkflow_caller")
    scheduled = next(e for e in h.events if e.event_type == "NodeScheduled")
    g = lineage.Graph(h.events, {scheduled.task_key: "child-1"})
    tree = g.forward().to_dict()
    assert _ids(tree, "execution")[1:] == ["child-1"]
    child = renamed(history("scenario:support_triage_billing").events, "child-1")
    from dataclasses import replace

    child[0] = replace(child[0], dedup_key=scheduled.task_key)
    assert lineage.parent_of(child) == "parent-1"
    chain = lineage.Graph(child).backward(child[0].event_id, "parent-1").to_dict()
    assert chain["kind"] == "execution" and chain["id"] == "parent-1"
