"""Verified resolution (issue 13): a dead-lettered node's incident stays open while it is
retried and resolves only when a retry of the node succeeds."""

from __future__ import annotations

import pytest
from flowlog.aggregates.execution import inputs as I

from tests.support.runs import Run, example

pytestmark = pytest.mark.unit


def _dead_lettered(execution_id: str = "hook-9") -> Run:
    run = Run(example("webhook-retry-deadletter"), execution_id)
    run.trigger({"order_id": "O-9"}, source="event")
    run.fail("notify", "bad request", retryable=False)  # attempt 1: dead letter at once
    assert run.state.nodes["notify"].status == "dead_lettered"
    assert run.state.incidents == {"notify:1": "notify"}
    return run


def test_a_retry_keeps_the_incident_open_until_the_node_succeeds() -> None:
    run = _dead_lettered()
    evs = run.send(I.RetryNodeRequested(event_id="retry-1", node_id="notify"))
    assert run.types(evs) == ["NodeScheduled", "TimerSet"]
    assert run.state.incidents == {"notify:1": "notify"}  # not resolved by the request
    assert run.state.status == "incident"
    evs = run.ok("notify", {"status": 202})
    assert run.types(evs)[:2] == ["NodeSucceeded", "IncidentResolved"]
    resolved = evs[1]
    assert (resolved.incident_id, resolved.resolution) == ("notify:1", "retried")
    assert run.state.incidents == {}


def test_a_failed_retry_dead_letters_again_under_the_same_open_incident() -> None:
    run = _dead_lettered()
    run.send(I.RetryNodeRequested(event_id="retry-1", node_id="notify"))
    evs = run.fail("notify", "still down", retryable=False)
    assert run.types(evs) == ["NodeFailed", "NodeDeadLettered"]  # no second incident
    assert run.state.incidents == {"notify:1": "notify"}
    run.send(I.RetryNodeRequested(event_id="retry-2", node_id="notify"))
    evs = run.ok("notify", {"status": 200})
    assert [e.incident_id for e in evs if e.event_type == "IncidentResolved"] == ["notify:1"]
    run.ok("record", {"ok": True})
    assert run.state.phase == "succeeded" and run.state.incidents == {}


def test_a_redelivered_retry_command_is_a_no_op() -> None:
    run = _dead_lettered()
    run.send(I.RetryNodeRequested(event_id="retry-1", node_id="notify"))
    assert run.send(I.RetryNodeRequested(event_id="retry-1", node_id="notify")) == []
    assert run.attempt("notify") == 2


def test_a_second_retry_while_one_runs_is_ignored() -> None:
    run = _dead_lettered()
    run.send(I.RetryNodeRequested(event_id="retry-1", node_id="notify"))
    evs = run.send(I.RetryNodeRequested(event_id="retry-other", node_id="notify"))
    assert run.types(evs) == ["InputIgnored"]
    assert run.attempt("notify") == 2


def test_resume_still_resolves_an_incident_whose_retry_is_running() -> None:
    run = _dead_lettered()
    run.send(I.RetryNodeRequested(event_id="retry-1", node_id="notify"))
    evs = run.send(I.ResumeRequested(event_id="resume-1", reason="done by phone"))
    assert "IncidentResolved" in run.types(evs) and run.state.incidents == {}
    late = run.ok("notify", {"status": 200})  # the running retry reports late: ignored
    assert run.types(late) == ["InputIgnored"]
