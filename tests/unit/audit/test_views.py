"""History, state at a seq or a time, and diff, on recorded histories of every example."""

from __future__ import annotations

import copy
import random

import pytest
from flowlog.aggregates.execution.aggregate import WorkflowExecution
from flowlog.aggregates.execution.evolve import fold
from flowlog.projections.audit import views

from tests.support.histories import EXAMPLES_COVERED, HISTORIES, IDS, REPO, History, history

pytestmark = pytest.mark.unit


def test_every_example_workflow_has_a_recorded_history() -> None:
    examples = {p.stem for p in (REPO / "examples").glob("*.yaml")}
    assert examples <= EXAMPLES_COVERED


@pytest.mark.parametrize("h", HISTORIES, ids=IDS)
def test_state_at_every_seq_equals_the_fold_up_to_it(h: History) -> None:
    # the eventsourcing aggregate, replayed event by event, is the independent reference
    for k in range(len(h.events) + 1):
        state = views.state_at(h.events, k)
        assert state.seq == k
        assert state.to_dict() == fold(h.events[:k]).to_dict()
    replayed = None
    for k, e in enumerate(h.events, 1):
        rec = _aggregate_event(e, replayed)
        replayed = rec
        assert views.state_view(replayed.state) == views.state_view(views.state_at(h.events, k))


def _aggregate_event(e, agg):  # type: ignore[no-untyped-def]
    from flowlog.aggregates.execution.events import event_to_dict

    if agg is None:
        return WorkflowExecution(execution_id=e.execution_id, event=event_to_dict(e),
                                 timestamp=e.occurred_at)
    agg._recorded(event=event_to_dict(e), timestamp=e.occurred_at)
    return agg


@pytest.mark.parametrize("h", HISTORIES, ids=IDS)
def test_state_at_a_time_is_the_state_after_the_last_event_by_then(h: History) -> None:
    for e in h.events:
        seq = views.seq_at_time(h.events, e.occurred_at)
        assert seq >= e.seq  # events of one decision share their time
        assert all(x.occurred_at <= e.occurred_at for x in h.events[:seq])
        assert seq == len(h.events) or h.events[seq].occurred_at > e.occurred_at
    assert views.seq_at_time(h.events, h.events[0].occurred_at.replace(year=2000)) == 0


@pytest.mark.parametrize("h", HISTORIES, ids=IDS)
def test_diff_lists_exactly_the_changed_fields(h: History) -> None:
    rnd = random.Random(h.name)
    n = len(h.events)
    pairs = [(k, k + 1) for k in range(n)] + [tuple(sorted(rnd.sample(range(n + 1), 2)))
                                              for _ in range(20)]
    for a, b in pairs:
        before = views.state_view(views.state_at(h.events, a))
        after = views.state_view(views.state_at(h.events, b))
        changes = views.diff(before, after)
        for c in changes:  # every listed field differs ...
            assert c.before != c.after or type(c.before) is not type(c.after)
        # ... and applying the list to the first view gives exactly the second
        assert _apply(before, changes) == after
        assert views.flatten(_apply(before, changes)) == views.flatten(after)
        assert views.diff(before, before) == []


def _apply(view: dict, changes: list[views.Change]) -> dict:  # type: ignore[type-arg]
    out = copy.deepcopy(view)
    for c in changes:
        *parents, last = c.path.split(".")
        target = out
        for key in parents:
            target = target[key]
        if c.kind == "removed":
            del target[last]
        else:
            target[last] = copy.deepcopy(c.after)
    return out


def test_diff_of_a_node_result_names_its_fields() -> None:
    h = history("fixture:support_triage_billing")
    seq = next(e.seq for e in h.events if e.event_type == "NodeSucceeded")  # classify
    before = views.state_view(views.state_at(h.events, seq - 1))
    after = views.state_view(views.state_at(h.events, seq))
    paths = {c.path: c for c in views.diff(before, after)}
    timer = "pending_timers.node_timeout:classify:1"
    assert set(paths) == {"seq", "nodes.classify.status", "nodes.classify.output", timer}
    assert (paths["nodes.classify.status"].before, paths["nodes.classify.status"].after) == \
        ("scheduled", "succeeded")
    assert paths[timer].kind == "removed" and paths[timer].before["kind"] == "node_timeout"
    assert paths["nodes.classify.output"].before is None
    assert paths["nodes.classify.output"].after == {"category": "billing", "customer_id": "C-7"}


def test_history_has_node_runs_calls_and_operator_commands() -> None:
    h = views.history(history("fixture:support_triage_billing").events)
    assert [m["model"] for m in h["model_calls"]] == ["claude-3-5-haiku"]
    assert [t["tool"] for t in h["tool_calls"]] == ["lookup_customer"]
    classify = next(r for r in h["node_runs"] if r["node_id"] == "classify")
    assert classify["status"] == "succeeded" and classify["model_calls"] == 1
    assert classify["duration_ms"] == 2000
    assert h["status"] == "succeeded" and len(h["events"]) == 19

    retried = views.history(history("fixture:webhook_dead_letter_then_retry").events)
    assert [(c["command"], c["command_id"], c["node_id"]) for c in
            retried["operator_commands"]] == [("RetryNodeRequested", "dlq-retry-1", "notify")]
    notify = [r for r in retried["node_runs"] if r["node_id"] == "notify"]
    assert [r["status"] for r in notify] == ["failed", "failed", "dead_lettered", "succeeded"]

    told = views.history(history("fixture:webhook_dead_letter_then_retry").events,
                         {"dlq-retry-1": {"actor": "key:ci", "header_reason": "fixed",
                                          "reason": "by hand"}})
    assert [(c["who"], c["why"]) for c in told["operator_commands"]] == [("key:ci", "fixed")]

    resumed = views.history(history("scenario:webhook_dead_letter_then_resume").events)
    assert [c["command"] for c in resumed["operator_commands"]] == ["ResumeRequested"]
    assert resumed["operator_commands"][0]["who"] is None  # no command record given
