"""The determinism check and what-if replays on recorded histories of every example."""

from __future__ import annotations

import copy
import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from flowlog.aggregates.definition import compile_definition, parse_definition
from flowlog.aggregates.definition.compiled import CompiledDefinition
from flowlog.aggregates.execution import decide as decide_module
from flowlog.aggregates.execution.events import event_to_dict
from flowlog.projections.audit import replay
from flowlog.projections.audit.steps import recorded_steps

from tests.support.histories import (
    NONDETERMINISTIC,
    REPLAYABLE,
    REPLAYABLE_IDS,
    History,
    example,
    history,
)

pytestmark = pytest.mark.unit
DECIDE = __import__("flowlog.aggregates.execution.decide", fromlist=["decide"])


def _edited(d: CompiledDefinition, **node_changes: dict[str, Any]) -> CompiledDefinition:
    raw = copy.deepcopy(d.spec.raw)
    for node_id, change in node_changes.items():
        raw["nodes"][node_id].update(change)
    raw["version"] = d.version + 1
    return compile_definition(parse_definition(raw))


# --- verify ----------------------------------------------------------------------------------

@pytest.mark.parametrize("h", REPLAYABLE, ids=REPLAYABLE_IDS)
def test_recorded_histories_re_decide_to_the_recorded_events(h: History) -> None:
    if h.name in NONDETERMINISTIC:
        pytest.xfail("fan-out-fan-in's report.best depends on CEL map key order (see "
                     "tests.support.histories.NONDETERMINISTIC)")
    assert replay.verify(h.events, h.definition) is None


@pytest.mark.parametrize("h", REPLAYABLE, ids=REPLAYABLE_IDS)
def test_every_recorded_input_is_rebuilt(h: History) -> None:
    steps = recorded_steps(h.events, h.definition)
    assert [e for s in steps for e in s.events] == h.events
    ignored = {s.kind for s in steps if s.input is None}
    assert ignored <= {"ignored", "rejected"}


@pytest.mark.parametrize("h", [h for h in REPLAYABLE if h.name not in NONDETERMINISTIC],
                         ids=[i for i in REPLAYABLE_IDS if i not in NONDETERMINISTIC])
def test_a_non_deterministic_decide_is_caught(h: History,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Today's code reads the clock once (a microsecond late) on the third decision."""
    real = DECIDE.decide
    calls = [0]

    def drifting(state: Any, input_: Any, now: Any, definition: Any, **kw: Any) -> Any:
        calls[0] += 1
        if calls[0] == 3:
            now = now + timedelta(microseconds=1)
        return real(state, input_, now, definition, **kw)

    monkeypatch.setattr(DECIDE, "decide", drifting)
    found = replay.verify(h.events, h.definition)
    steps = [s for s in recorded_steps(h.events, h.definition) if s.input is not None]
    if len(steps) < 3:
        assert found is None
        return
    assert found is not None
    assert found.seq == steps[2].first_seq and found.cause == steps[2].cause
    assert [r["event_id"] for r in found.recorded] == \
        [event_to_dict(e)["event_id"] for e in steps[2].events]
    assert found.decided != found.recorded


def test_a_changed_rule_is_caught_where_it_first_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new engine version that routes every switch to its default branch."""
    h = history("scenario:support_triage_billing")
    real = DECIDE.decide

    def rerouting(state: Any, input_: Any, now: Any, definition: Any, **kw: Any) -> Any:
        events = real(state, input_, now, definition, **kw)
        return [dataclasses.replace(e, branch="default") if e.event_type == "BranchDecided"
                else e for e in events]

    monkeypatch.setattr(DECIDE, "decide", rerouting)
    found = replay.verify(h.events, h.definition)
    assert found is not None and found.execution_id == "triage-1"
    branch = next(e for e in h.events if e.event_type == "BranchDecided")
    assert found.cause == branch.causation_id
    assert [e["branch"] for e in found.decided if e["event_type"] == "BranchDecided"] == \
        ["default"]
    assert decide_module is not None


# --- what-if ---------------------------------------------------------------------------------

@pytest.mark.parametrize("h", [h for h in REPLAYABLE if h.name not in NONDETERMINISTIC],
                         ids=[i for i in REPLAYABLE_IDS if i not in NONDETERMINISTIC])
def test_what_if_with_the_unchanged_definition_reports_no_difference(h: History) -> None:
    before = copy.deepcopy(h.events)
    report = replay.what_if(h.events, h.definition, h.definition)
    assert not report.changed, report.to_dict()
    assert report.nodes == [] and report.needs_call == [] and report.first_divergence is None
    assert report.unused_results == []
    assert h.events == before  # nothing touched


def test_a_changed_switch_reports_the_branch_and_the_nodes_downstream() -> None:
    h = history("scenario:support_triage_billing")
    changed = _edited(h.definition, route={"cases": {"billing": ["file_issue"],
                                                     "bug": ["refund_check"]}})
    report = replay.what_if(h.events, changed, h.definition)
    by_node = {n["node_id"]: n for n in report.nodes}
    assert set(by_node) == {"route", "refund_check", "file_issue", "draft", "post_reply"}
    assert by_node["route"]["recorded"]["output"]["targets"] == ["refund_check"]
    assert by_node["route"]["what_if"]["output"]["targets"] == ["file_issue"]
    assert by_node["refund_check"]["what_if"]["status"] == "skipped"
    assert by_node["file_issue"]["what_if"]["status"] == "scheduled"
    assert by_node["draft"]["what_if"]["status"] == "not reached"
    assert [(n["node_id"], n["reason"]) for n in report.needs_call] == \
        [("file_issue", "no recorded result for this node attempt")]
    assert report.outcome_changed and report.what_if_outcome["status"] == "running"
    assert report.first_divergence is not None
    assert report.first_divergence["recorded"]["event_type"] == "BranchDecided"
    assert {u["node_id"] for u in report.unused_results} == {"refund_check", "draft",
                                                             "post_reply"}


def test_a_changed_condition_with_pure_branches_changes_the_outcome_without_calls() -> None:
    h = history("scenario:delay_and_wait_approved")
    changed = _edited(h.definition, check={"if": "nodes.approval.output.accepted == false"})
    report = replay.what_if(h.events, changed, h.definition)
    by_node = {n["node_id"]: n for n in report.nodes}
    assert set(by_node) == {"check", "approved", "rejected"}
    assert by_node["approved"]["what_if"]["status"] == "skipped"
    assert by_node["rejected"]["what_if"]["status"] == "succeeded"
    assert report.needs_call == []
    assert report.recorded_outcome["output"] == {"decision": "approved"}
    assert report.what_if_outcome["output"] == {"decision": "rejected"}


def test_a_changed_node_input_needs_a_new_call() -> None:
    h = history("scenario:support_triage_billing")
    changed = _edited(h.definition, classify={"input": {"subject": "inputs.ticket.body",
                                                        "body": "inputs.ticket.body"}})
    report = replay.what_if(h.events, changed, h.definition)
    assert [(n["node_id"], n["reason"]) for n in report.needs_call] == \
        [("classify", "its input differs from the recorded call")]
    assert report.needs_call[0]["input"]["subject"] == "I was charged twice."


def test_what_if_of_a_retry_policy_change() -> None:
    h = history("scenario:webhook_dead_letter_then_retry")
    changed = _edited(h.definition, notify={"retry": {"max_attempts": 4, "initial_delay": "1s"}})
    report = replay.what_if(h.events, changed, h.definition)
    # attempt 3 now waits for a retry the recording never fired (its timer is armed, not
    # due); the operator's retry finds no dead letter, so nothing more happens
    assert report.needs_call == []
    by_node = {n["node_id"]: n for n in report.nodes}
    assert by_node["notify"]["what_if"] == {"status": "retry_wait", "attempt": 3,
                                            "output": None}
    assert report.what_if_outcome["status"] == "waiting"
    assert report.outcome_changed


def test_batch_what_if_summarises() -> None:
    h = history("scenario:support_triage_billing")
    changed = _edited(h.definition, route={"cases": {"billing": ["file_issue"],
                                                     "bug": ["refund_check"]}})
    other = history("scenario:batch_loop")
    histories = [(f"x{i}", h.events) for i in range(3)] + [("bad", other.events)]
    seen: list[Any] = []
    summary = replay.what_if_many(histories, changed, lambda w, v: h.definition,
                                  on_done=seen.append)
    assert (summary.total, summary.changed, summary.outcome_changed,
            summary.needing_calls) == (4, 4, 4, 3)
    assert len(seen) == 4
    assert summary.failed == 0


def test_examples_used_are_the_repository_ones() -> None:
    assert example("support-triage").workflow_id == "support-triage"


# --- the unchanged prefix is applied, not re-decided: same report as deciding everything ----

def _mutations(d: CompiledDefinition) -> list[tuple[str, CompiledDefinition]]:
    from flowlog.aggregates.errors import DefinitionInvalid

    out = []

    def add(label: str, change: Any) -> None:
        raw = copy.deepcopy(d.spec.raw)
        change(raw)
        raw["version"] = d.version + 1
        try:
            out.append((label, compile_definition(parse_definition(raw))))
        except (DefinitionInvalid, ValueError):
            pass

    for node_id, node in d.spec.raw["nodes"].items():
        add(f"{node_id}: retry", lambda r, n=node_id: r["nodes"][n].update(
            retry={"max_attempts": 5, "initial_delay": "3s"}))
        if node.get("input"):
            add(f"{node_id}: input", lambda r, n=node_id: r["nodes"][n].update(
                input={k: '"changed"' for k in r["nodes"][n]["input"]}))
        add(f"{node_id}: new dependent", lambda r, n=node_id: r["nodes"].update(
            extra={"type": "transform", "needs": [n], "output": '"extra"'}))
        if node.get("type") == "condition" and "if" in node:
            add(f"{node_id}: negated", lambda r, n=node_id: r["nodes"][n].update(
                {"if": f"!({r['nodes'][n]['if']})"}))
    add("outputs", lambda r: r.update(outputs={"z": '"constant"'}))
    add("unchanged", lambda r: None)
    return out


@pytest.mark.parametrize("h", [h for h in REPLAYABLE if h.name not in NONDETERMINISTIC],
                         ids=[i for i in REPLAYABLE_IDS if i not in NONDETERMINISTIC])
def test_skipping_the_unchanged_prefix_gives_the_same_report(h: History) -> None:
    mutations = _mutations(h.definition)
    assert len(mutations) >= 3
    for label, changed in mutations:
        fast = replay.what_if(h.events, changed, h.definition)
        full = replay.what_if(h.events, changed, h.definition, skip_unchanged=False)
        a, b = fast.to_dict(), full.to_dict()
        assert a == b, label


def test_the_prefix_ends_where_the_change_first_matters() -> None:
    h = history("scenario:support_triage_billing")
    steps = recorded_steps(h.events, h.definition)
    assert replay.unchanged_prefix(steps, h.definition, h.definition) == len(steps)
    changed = _edited(h.definition, route={"cases": {"billing": ["file_issue"]}})
    # route needs classify: the decision that finishes classify is the first to differ
    k = replay.unchanged_prefix(steps, h.definition, changed)
    assert [e.event_type for e in steps[k].events][-1] != "" and \
        any(getattr(e, "node_id", None) == "classify" and e.event_type == "NodeSucceeded"
            for e in steps[k].events)
    assert replay.unchanged_prefix(steps, None, changed) == 0
