"""The execution's rules, one by one: dedup, stale and duplicate results, timers, cancel."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flowlog.aggregates.definition import compile_definition, parse_definition
from flowlog.aggregates.execution import ExecutionState, decide
from flowlog.aggregates.execution import inputs as I
from flowlog.aggregates.ids import NAMESPACE_FLOWLOG, execution_event_id
from flowlog.aggregates.retry import RetryPolicy, backoff_ms

from tests.support.runs import T0, Run, example

pytestmark = pytest.mark.unit


def definition(nodes: dict, **top: object) -> object:
    return compile_definition(parse_definition({"id": "t", "nodes": nodes, **top}))


def test_event_envelope() -> None:
    run = Run(example("bench-5node"), "ex-9")
    (started, scheduled) = run.trigger({})
    assert str(NAMESPACE_FLOWLOG) == "6f1d1c2e-8b0a-5c7e-9a43-0f10c0ffee00"
    assert scheduled.event_id == execution_event_id("ex-9", 2)
    assert (scheduled.seq, scheduled.occurred_at, scheduled.tenant) == (2, T0, "default")
    assert scheduled.causation_id == started.causation_id == run.inputs[0][1].event_id
    assert scheduled.correlation_id == run.inputs[0][1].event_id
    assert (scheduled.workflow_id, scheduled.workflow_version) == ("bench-5node", 1)


def test_redelivered_input_gives_no_events_and_second_report_is_ignored() -> None:
    run = Run(example("bench-5node"))
    run.trigger({})
    first = run.ok("A", {"v": 1})
    assert run.send(run.inputs[-1][1]) == []  # same event id: already applied
    again = run.send(I.NodeResultReported(event_id="other", node_id="A", attempt=1,
                                          status="succeeded", output={"v": 2}))  # fmt: skip
    assert run.types(again) == ["InputIgnored"] and again[0].reason == "duplicate result"
    assert run.state.nodes["A"].output == {"v": 1} and first


def test_stale_attempt_is_recorded_and_ignored() -> None:
    d = definition({"a": {"type": "tool", "tool": "t", "retry": {"max_attempts": 3}}})
    run = Run(d)
    run.trigger({})
    run.fail("a")
    run.fire("retry", "a")
    late = run.send(I.NodeResultReported(event_id="late", node_id="a", attempt=1,
                                         status="succeeded", output=1))  # fmt: skip
    assert [(e.event_type, e.reason) for e in late] == [("InputIgnored", "stale attempt")]
    assert run.state.nodes["a"].status == "scheduled" and run.attempt("a") == 2


def test_retry_due_time_is_deterministic_and_bounded() -> None:
    policy = RetryPolicy(max_attempts=5, initial_delay_ms=1000, multiplier=2, max_delay_ms=5000,
                         jitter=0.5)  # fmt: skip
    assert backoff_ms(policy, "e", "n", 2) == backoff_ms(policy, "e", "n", 2)
    assert 1000 <= backoff_ms(policy, "e", "n", 2) <= 3000
    assert all(backoff_ms(policy, "e", "n", k) <= 5000 for k in range(1, 10))
    assert len({backoff_ms(policy, f"e{i}", "n", 1) for i in range(20)}) > 1


def test_redeciding_gives_identical_events() -> None:
    run = Run(example("support-triage"))
    run.trigger({"ticket": {"id": "1", "subject": "s", "body": "b"}})
    inp = I.NodeResultReported(event_id="r", node_id="classify", attempt=1, status="failed",
                               error={"type": "E", "message": "m", "retryable": True})  # fmt: skip
    assert decide(run.state, inp, T0, run.d) == decide(run.state.clone(), inp, T0, run.d)
    before = run.state.to_dict()
    decide(run.state, inp, T0, run.d)
    assert run.state.to_dict() == before  # decide never touches the state


def test_rejections() -> None:
    d = example("support-triage")
    trig = I.TriggerReceived(event_id="t", execution_id="e", workflow_id="support-triage",
                             workflow_version=1, input={})  # fmt: skip
    (ev,) = decide(ExecutionState(), trig, T0, d)
    assert ev.event_type == "ExecutionRejected" and ev.reason == "invalid input: ticket is required"
    (ev,) = decide(ExecutionState(), trig, T0, None)
    assert ev.reason == "unknown workflow"
    (ev,) = decide(ExecutionState(), trig, T0, d, accepting=False)
    assert ev.reason == "paused workflow"


def test_cancel_then_everything_is_ignored() -> None:
    run = Run(example("bench-5node"))
    run.trigger({})
    assert run.types(run.send(I.CancelRequested(event_id="c", reason="user"))) == [
        "ExecutionCancelled"]  # fmt: skip
    late = run.ok("A", {})
    assert late[0].reason == "execution finished" and run.state.status == "cancelled"


def test_execution_timeout() -> None:
    run = Run(definition({"a": {"type": "tool", "tool": "t"}}, timeout="1m"))
    run.trigger({})
    assert run.state.timers["execution_timeout"][3] == (T0 + timedelta(minutes=1)).isoformat()
    run.fire("execution_timeout")
    assert run.state.status == "failed" and run.state.error["type"] == "ExecutionTimeout"


def test_pure_node_error_fails_without_retry() -> None:
    run = Run(definition({"a": {"type": "transform", "output": "1 / inputs.zero"}},
                         inputs={"zero": {"type": "integer", "default": 0}}))  # fmt: skip
    run.trigger({})
    assert run.types() == ["ExecutionStarted", "NodeFailed", "ExecutionFailed"]
    assert run.state.error["type"] == "ExpressionError"


def test_switch_and_skip_cascade() -> None:
    d = definition({
        "s": {"type": "condition", "switch": "inputs.k", "cases": {"x": ["a"], "y": ["b"]},
              "default": ["c"]},
        "a": {"type": "tool", "tool": "t", "needs": ["s"]},
        "b": {"type": "tool", "tool": "t", "needs": ["s"]},
        "c": {"type": "tool", "tool": "t", "needs": ["s"]},
        "after_b": {"type": "tool", "tool": "t", "needs": ["b"]},
        "merge": {"type": "transform", "needs": ["a", "b", "c"], "output": "1"},
    }, inputs={"k": "string"})  # fmt: skip
    run = Run(d)
    run.trigger({"k": "zzz"})
    assert run.scheduled() == ["c"]
    assert {n: r.status for n, r in run.state.nodes.items() if r.status == "skipped"} == {
        "a": "skipped", "b": "skipped", "after_b": "skipped"}  # fmt: skip
    run.ok("c", 1)
    assert run.state.status == "succeeded"


def test_while_loop_bound_exceeded_fails() -> None:
    run = Run(definition({"l": {"type": "loop", "while": "true", "max_iterations": 3,
                                "do": {"type": "transform", "output": "index"}}}))  # fmt: skip
    run.trigger({})
    assert run.types().count("LoopIterationCompleted") == 3
    assert run.state.error["type"] == "LoopBoundExceeded"


def test_started_report_and_status() -> None:
    run = Run(example("bench-5node"))
    run.trigger({})
    evs = run.send(I.NodeResultReported(event_id="s", node_id="A", attempt=1, status="started"))
    assert run.types(evs) == ["NodeStarted"] and run.state.status == "running"
    run.ok("A", {})
    assert run.state.nodes["A"].status == "succeeded"


def _circuit_open(run: Run, node_id: str, retry_at: object) -> list[object]:
    return run.send(I.NodeResultReported(
        event_id=run._id("result"), node_id=node_id, attempt=run.attempt(node_id),
        status="failed", error={"type": "circuit_open", "message": "circuit open for x",
                                "retryable": True, "retry_at": retry_at},
    ))  # fmt: skip


def test_an_open_breaker_defers_to_its_half_open_time_and_uses_no_attempt() -> None:
    d = definition({"a": {"type": "tool", "tool": "t", "retry": {"max_attempts": 2}}})
    run = Run(d)
    run.trigger({})
    half_open = T0 + timedelta(seconds=30)
    for _ in range(5):  # five fail-fast answers: none of them spends an attempt
        evs = _circuit_open(run, "a", half_open.isoformat())
        assert run.types(evs) == ["NodeFailed", "NodeRetryScheduled", "TimerSet"]
        assert evs[0].error["type"] == "circuit_open"  # the reason, visible in the log
        not_before = max(half_open, run.now)
        assert not_before <= evs[1].due_at < not_before + timedelta(seconds=1)
        run.fire("retry", "a")
    assert run.attempt("a") == 6 and run.state.deferrals == {"a": 5}
    # one real failure: attempt 1 of 2 spent, so one retry is left
    assert "NodeRetryScheduled" in run.types(run.fail("a"))
    run.fire("retry", "a")
    assert run.types(run.fail("a"))[-1] == "ExecutionFailed"  # two real failures: done


def test_deferrals_survive_a_snapshot() -> None:
    d = definition({"a": {"type": "tool", "tool": "t", "retry": {"max_attempts": 2}}})
    run = Run(d)
    run.trigger({})
    _circuit_open(run, "a", (T0 + timedelta(seconds=30)).isoformat())
    restored = ExecutionState.from_dict(run.state.to_dict())
    assert restored.deferrals == {"a": 1} and restored == run.state


def test_a_non_retryable_error_is_not_deferred_even_with_retry_at() -> None:
    d = definition({"a": {"type": "tool", "tool": "t", "retry": {"max_attempts": 3}}})
    run = Run(d)
    run.trigger({})
    evs = run.send(I.NodeResultReported(
        event_id="r", node_id="a", attempt=1, status="failed",
        error={"type": "x", "message": "m", "retryable": False,
               "retry_at": (T0 + timedelta(seconds=5)).isoformat()}))  # fmt: skip
    assert run.types(evs)[-1] == "ExecutionFailed"
