"""Each role's per-input policy (streams/runtime/policy.py), table by table."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from flowlog.aggregates import records
from flowlog.aggregates.execution import ExecutionState
from flowlog.streams.runtime import policy
from flowlog.streams.runtime.admission import Entry
from flowlog.streams.runtime.registry import DefinitionRegistry

pytestmark = pytest.mark.unit


@dataclass
class Wf:
    versions: dict[int, Any] = field(default_factory=dict)
    status: str = "active"


def trigger(version: int = 0, workflow_id: str = "wf", execution_id: str = "ex-1"
            ) -> dict[str, Any]:
    return {"execution_id": execution_id, "workflow_id": workflow_id,
            "workflow_version": version}


def started(workflow_id: str = "wf", version: int = 3, phase: str = "active"
            ) -> ExecutionState:
    s = ExecutionState()
    s.execution_id, s.workflow_id, s.workflow_version, s.phase = "ex-1", workflow_id, version, phase
    return s


# --- orchestrator ----------------------------------------------------------------------------

@pytest.mark.parametrize(("requested", "versions", "pinned"), [
    (2, {1, 2, 3}, 2),  # a trigger naming a version keeps it
    (7, {1, 2, 3}, 7),  # even one the registry does not hold (decide rejects: unknown)
    (0, {1, 2, 3}, 3),  # 0: the newest
    (0, {5}, 5),
    (0, set(), 0),  # defined without versions: 0 (unknown definition, rejected)
    (0, None, 0),  # unknown workflow: as asked
    (4, None, 4),
    (-1, None, -1),
    (-1, {1, 2}, 2),  # not a version: the newest, as for 0
])
def test_pin_version(requested: int, versions: set[int] | None, pinned: int) -> None:
    assert policy.pin_version(requested, versions) == pinned


@pytest.mark.parametrize(("status", "accepting"), [
    ("active", True), ("draft", False), ("paused", False), ("archived", False),
    (None, False), ("", False), ("ACTIVE", False),
])
def test_accepts_only_an_active_workflow(status: str | None, accepting: bool) -> None:
    assert policy.accepts(status) is accepting


@pytest.mark.parametrize(("tenant_limit", "queue"), [(0, None), (-1, None), (1, True),
                                                      (50, True)])
def test_admission_queue(tenant_limit: int, queue: bool | None) -> None:
    assert policy.admission_queue(tenant_limit) is queue


@pytest.mark.parametrize(("name", "record", "key", "expected"), [
    ("TriggerReceived", {"execution_id": "ex-1"}, b"ex-1", "ex-1"),
    ("NodeResultReported", {"execution_id": "ex-1"}, None, "ex-1"),  # no key: accepted
    ("CancelRequested", {"execution_id": "ex-1"}, b"ex-1", "ex-1"),
    ("ExecutionAdmitted", {"execution_id": "ex-1"}, b"ex-1", "ex-1"),
    ("TimerFired", {"execution_id": "ex-1"}, b"ex-1", "ex-1"),
    ("TriggerReceived", {"execution_id": "ex-1"}, b"ex-2", "keyed wrong"),
    ("TriggerReceived", {"execution_id": "ex-1"}, b"\xff", "keyed wrong"),  # not UTF-8
    ("TriggerReceived", {"execution_id": "ex-1"}, b"", "keyed wrong"),
    ("NodeTaskIssued", {"execution_id": "ex-1"}, b"ex-1", "not an orchestrator input"),
    ("ExecutionStarted", {"execution_id": "ex-1"}, b"ex-1", "not an orchestrator input"),
])
def test_input_execution_id(name: str, record: dict[str, Any], key: bytes | None,
                            expected: str) -> None:
    if expected.startswith("ex-"):
        assert policy.input_execution_id(name, record, key) == expected
    else:
        with pytest.raises(records.WireError, match=expected):
            policy.input_execution_id(name, record, key)


@pytest.mark.parametrize(("name", "workflow_id", "known", "catch_up"), [
    ("TriggerReceived", "wf", {"wf"}, False),
    ("TriggerReceived", "new", {"wf"}, True),  # defined a moment ago?
    ("TriggerReceived", "wf", set(), True),
    ("CancelRequested", "new", set(), False),  # only a trigger looks a workflow up
    ("NodeResultReported", "new", set(), False),
])
def test_needs_catch_up(name: str, workflow_id: str, known: set[str], catch_up: bool) -> None:
    assert policy.needs_catch_up(name, {"workflow_id": workflow_id}, known) is catch_up


@pytest.mark.parametrize(("name", "record", "state", "workflow", "tenant_limit", "terms"), [
    # a trigger pins the newest version of an active workflow
    ("TriggerReceived", trigger(0), ExecutionState(), Wf({1: {}, 2: {}}), 0,
     policy.InputTerms(("wf", 2), 2, True, None)),
    # its own version, and a tenant limit queues it
    ("TriggerReceived", trigger(1), ExecutionState(), Wf({1: {}, 2: {}}), 3,
     policy.InputTerms(("wf", 1), 1, True, True)),
    # paused or archived: not accepting (decide rejects it)
    ("TriggerReceived", trigger(0), ExecutionState(), Wf({1: {}}, "paused"), 0,
     policy.InputTerms(("wf", 1), 1, False, None)),
    ("TriggerReceived", trigger(0), ExecutionState(), Wf({1: {}}, "archived"), 0,
     policy.InputTerms(("wf", 1), 1, False, None)),
    ("TriggerReceived", trigger(0), ExecutionState(), Wf({1: {}}, "draft"), 0,
     policy.InputTerms(("wf", 1), 1, False, None)),
    # unknown workflow: version as asked, not accepting
    ("TriggerReceived", trigger(0), ExecutionState(), None, 0,
     policy.InputTerms(("wf", 0), 0, False, None)),
    # a duplicate trigger of a started execution: still its own terms (decide ignores it)
    ("TriggerReceived", trigger(0), started(), Wf({1: {}, 9: {}}), 0,
     policy.InputTerms(("wf", 9), 9, True, None)),
    # other inputs: the execution's pinned version, whatever the registry's newest is
    ("NodeResultReported", {"execution_id": "ex-1"}, started("wf", 3), Wf({1: {}, 9: {}}), 2,
     policy.InputTerms(("wf", 3), None, True, None)),
    ("CancelRequested", {"execution_id": "ex-1"}, started("wf", 3, "queued"), None, 0,
     policy.InputTerms(("wf", 3), None, True, None)),
    # ... of a paused workflow: a running execution goes on
    ("TimerFired", {"execution_id": "ex-1"}, started("wf", 3), Wf({3: {}}, "paused"), 0,
     policy.InputTerms(("wf", 3), None, True, None)),
    ("ExecutionAdmitted", {"execution_id": "ex-1"}, started("wf", 3, "succeeded"), None, 0,
     policy.InputTerms(("wf", 3), None, True, None)),
    # an execution never started: nothing to look up
    ("NodeResultReported", {"execution_id": "ex-1"}, ExecutionState(), Wf({1: {}}), 0,
     policy.NOT_STARTED),
])
def test_input_terms(name: str, record: dict[str, Any], state: ExecutionState,
                     workflow: Wf | None, tenant_limit: int, terms: policy.InputTerms) -> None:
    assert policy.input_terms(name, record, state, workflow, tenant_limit) == terms


def test_the_registry_pins_and_accepts_by_the_same_policy() -> None:
    reg = DefinitionRegistry()
    for name, rec in [("WorkflowDefined", {"version": 1, "definition": {}}),
                      ("WorkflowUpdated", {"version": 2, "definition": {}}),
                      ("WorkflowActivated", {})]:
        reg.apply(name, {"workflow_id": "wf", **rec})
    assert (reg.resolve("wf", 0), reg.resolve("wf", 1), reg.resolve("nope", 0)) == (2, 1, 0)
    assert reg.accepting("wf") and not reg.accepting("nope")
    reg.apply("WorkflowPaused", {"workflow_id": "wf", "reason": "r"})
    assert not reg.accepting("wf")
    reg.apply("WorkflowArchived", {"workflow_id": "wf"})
    reg.apply("WorkflowActivated", {"workflow_id": "wf"})  # forbidden: stays archived
    assert not reg.accepting("wf") and reg.workflows["wf"].status == "archived"


@pytest.mark.parametrize(("name", "phase", "reason"), [
    ("NodeResultReported", "pending", "unknown_execution"),
    ("TimerFired", "pending", "unknown_execution"),
    ("TriggerReceived", "pending", "duplicates"),
    ("TriggerReceived", "active", "duplicates"),
    ("NodeResultReported", "active", "duplicates"),
    ("CancelRequested", "succeeded", "duplicates"),
])
def test_no_events_reason(name: str, phase: str, reason: str) -> None:
    assert policy.no_events_reason(name, phase) == reason


# --- dispatcher ------------------------------------------------------------------------------

@pytest.mark.parametrize(("last", "seq", "finished", "step"), [
    (None, 1, False, "apply"),  # the first event of a new execution
    (None, 2, False, "gap"),  # its first events are missing
    (None, 0, False, "gap"),
    (None, 1, True, "finished"),  # a re-written event of a finished execution
    (None, 9, True, "finished"),
    (3, 4, False, "apply"),
    (3, 3, False, "repeat"),  # re-written
    (3, 1, False, "repeat"),
    (3, 5, False, "gap"),
    (3, 100, False, "gap"),
])
def test_seq_step(last: int | None, seq: int, finished: bool, step: str) -> None:
    assert policy.seq_step(last, seq, finished) == step


@pytest.mark.parametrize(("offset", "resume_at", "issue"), [
    (0, 0, True), (5, 5, True), (6, 5, True), (4, 5, False), (0, 10, False)])
def test_issues_tasks_only_from_the_committed_offset(offset: int, resume_at: int,
                                                     issue: bool) -> None:
    assert policy.issues_tasks(offset, resume_at) is issue


@pytest.mark.parametrize(("name", "topic"), [
    ("NodeTaskIssued", "node-tasks"), ("NodeResultReported", "node-results")])
def test_record_topic(name: str, topic: str) -> None:
    assert policy.record_topic(name) == topic


@pytest.mark.parametrize(("event_type", "limited", "controlled"), [
    ("ExecutionQueued", False, True),
    ("ExecutionQueued", True, True),
    ("ExecutionStarted", True, True),  # admitted: still holds its slot
    ("ExecutionSucceeded", True, True),  # ends: released after this batch
    ("ExecutionStarted", False, False),  # never queued: no flow control
    ("NodeScheduled", False, False),
])
def test_flow_controlled(event_type: str, limited: bool, controlled: bool) -> None:
    assert policy.flow_controlled(event_type, limited) is controlled


@pytest.mark.parametrize(("phase", "step"), [
    ("queued", "enqueue"), ("active", None), ("pending", None),
    ("succeeded", "release"), ("failed", "release"), ("cancelled", "release"),
    ("rejected", "release"),
])
def test_flow_step(phase: str, step: str | None) -> None:
    finished = phase in ("succeeded", "failed", "cancelled", "rejected")
    assert policy.flow_step(phase, finished) == step


@pytest.mark.parametrize(("definition", "limit"), [
    (None, None), (SimpleNamespace(max_executions=None), None),
    (SimpleNamespace(max_executions=2), 2)])
def test_workflow_limit(definition: Any, limit: int | None) -> None:
    assert policy.workflow_limit(definition) == limit


@pytest.mark.parametrize("tenant", ["default", "acme", "a|b"])
def test_admission_entry_counts_against_its_tenant(tenant: str) -> None:
    entry = policy.admission_entry("ex-1", "wf", 3, tenant)
    assert entry == Entry("ex-1", "wf", 3, tenant)
    assert Entry.decode(entry.encode()) == entry  # the tenant is the last field: '|' survives


# --- executor --------------------------------------------------------------------------------

@pytest.mark.parametrize(("is_task", "finished", "running", "action"), [
    (False, False, False, "quarantine"),
    (False, True, True, "quarantine"),
    (True, True, False, "republish"),
    (True, True, True, "republish"),  # finished here: its result again, never a re-run
    (True, False, True, "already_running"),
    (True, False, False, "run"),
])
def test_task_action(is_task: bool, finished: bool, running: bool, action: str) -> None:
    assert policy.task_action(is_task, finished, running) == action


@pytest.mark.parametrize(("max_inflight", "running", "window"), [
    (10, 0, 10), (10, 9, 1), (10, 10, 0), (10, 12, 0), (1, 0, 1)])
def test_admit_window(max_inflight: int, running: int, window: int) -> None:
    assert policy.admit_window(max_inflight, running) == window


@pytest.mark.parametrize(("attempt", "delay"), [(0, 0.5), (1, 1.0), (2, None), (5, None)])
def test_resend_delay(attempt: int, delay: float | None) -> None:
    assert policy.resend_delay(attempt) == delay


@pytest.mark.parametrize(("running", "next_offset", "safe"), [
    (set(), None, None), (set(), 7, 7), ({3, 5}, 7, 3), ({6}, 7, 6), ({4}, None, 4)])
def test_safe_offset(running: set[int], next_offset: int | None, safe: int | None) -> None:
    assert policy.safe_offset(running, next_offset) == safe


@pytest.mark.parametrize(("now", "last", "force", "due"), [
    (10.0, 9.95, False, False), (10.0, 9.85, False, True), (10.0, 9.95, True, True),
    (10.0, 0.0, False, True)])
def test_commit_due(now: float, last: float, force: bool, due: bool) -> None:
    assert policy.commit_due(now, last, 0.1, force) is due
