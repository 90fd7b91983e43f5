"""`decide(state, input, now, definition) -> events`: what happens next, and nothing else.

Pure and deterministic: the same state, input, time and definition give the same events
with the same `seq` and `event_id`. Time is the `now` passed in; retry jitter is a hash of
(execution_id, node_id, attempt). `state` is never changed: apply the events with `evolve`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flowlog.aggregates.definition.compiled import CompiledDefinition, split_iteration
from flowlog.aggregates.definition.model import InputSpec
from flowlog.aggregates.execution import events as ev
from flowlog.aggregates.execution import inputs as inp
from flowlog.aggregates.execution.decision import Decision
from flowlog.aggregates.execution.jsonvalue import error_dict, error_from
from flowlog.aggregates.execution.nodes import wait
from flowlog.aggregates.execution.state import ExecutionState

# InputIgnored reasons
STALE_ATTEMPT = "stale attempt"
DUPLICATE_RESULT = "duplicate result"
EXECUTION_FINISHED = "execution finished"
DUPLICATE_TRIGGER = "duplicate trigger"
UNKNOWN_NODE = "unknown node"
STALE_TIMER = "stale timer"
NOT_DEAD_LETTERED = "node not dead-lettered"
NO_INCIDENT = "no open incident"
NO_WAITING_NODE = "no node waiting for event"
NOT_QUEUED = "execution not queued"


def decide(
    state: ExecutionState,
    input_: inp.Input,
    now: datetime,
    definition: CompiledDefinition | None,
    *,
    accepting: bool = True,
    queue: bool | None = None,
) -> list[ev.ExecutionEvent]:
    """The events that `input_` causes. Empty for an input already applied.

    `definition` is the execution's pinned version (None when it is unknown: a trigger is
    then rejected). `accepting=False` (a paused or archived workflow) rejects a trigger.
    Inputs other than a trigger for an execution that never started give no events.
    `queue` (flow control): an accepted trigger only queues the execution
    (`ExecutionQueued`) until `ExecutionAdmitted`; default: when the definition declares
    `concurrency.max_executions`. The caller passes True for a tenant limit too.
    """
    if input_.event_id in state.applied:
        return []
    if isinstance(input_, inp.TriggerReceived):
        return _trigger(state, input_, now, definition, accepting, queue)
    if state.phase == "pending" or definition is None:
        return []
    d = Decision(state, definition, now, input_.event_id)
    if state.finished:
        d.ignore(input_.event_id, EXECUTION_FINISHED)
        return d.events
    handler = _HANDLERS[type(input_)]
    handler(d, input_)
    d.drain()
    d.settle()
    return d.events


def _trigger(
    state: ExecutionState,
    t: inp.TriggerReceived,
    now: datetime,
    definition: CompiledDefinition | None,
    accepting: bool,
    queue: bool | None = None,
) -> list[ev.ExecutionEvent]:
    d = Decision(state, definition, now, t.event_id)
    if state.phase != "pending":
        d.ignore(t.event_id, DUPLICATE_TRIGGER)
        return d.events
    w = d.work
    w.execution_id, w.workflow_id, w.workflow_version = t.execution_id, t.workflow_id, (
        t.workflow_version
    )
    w.tenant, w.correlation_id = t.tenant, t.correlation_id or t.event_id
    reason = None
    if definition is None:
        reason = "unknown workflow"
    elif not accepting:
        reason = "paused workflow"
    else:
        problems, values = check_input(definition.input_specs, t.input)
        if problems:
            reason = "invalid input: " + "; ".join(problems)
    if reason is not None:
        d.emit(ev.ExecutionRejected, reason=reason)
        return d.events
    if queue is None:
        queue = d.d.max_executions is not None
    if queue:
        d.emit(ev.ExecutionQueued, input=values, trigger_source=t.source,
               dedup_key=t.dedup_key)  # fmt: skip
        return d.events
    _start(d, values, t.source, t.dedup_key)
    return d.events


def _start(d: Decision, values: dict[str, Any], source: str, dedup_key: str | None) -> None:
    d.emit(ev.ExecutionStarted, input=values, trigger_source=source, dedup_key=dedup_key)
    if d.d.timeout_ms is not None:
        d.set_timer("execution_timeout", None, None, d.d.timeout_ms)
    d.start_roots()
    d.settle()


def _admitted(d: Decision, a: inp.ExecutionAdmitted) -> None:
    w = d.work
    if w.phase != "queued":
        return d.ignore(a.event_id, NOT_QUEUED)
    return _start(d, w.input, w.trigger_source or "manual", w.dedup_key)


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def check_input(specs: dict[str, InputSpec], given: dict[str, Any]) -> tuple[list[str], dict]:
    """Check a trigger's input against the declared inputs; returns (problems, with defaults)."""
    if not isinstance(given, dict):
        return ["the input must be a JSON object"], {}
    problems: list[str] = []
    values = dict(given)
    for name, spec in specs.items():
        if name not in values:
            if spec.required:
                problems.append(f"{name} is required")
            else:
                values[name] = spec.default
            continue
        value = values[name]
        kinds = _JSON_TYPES.get(spec.type)
        if kinds and value is not None:
            bad_bool = isinstance(value, bool) and spec.type in ("number", "integer")
            if bad_bool or not isinstance(value, kinds):
                problems.append(f"{name} must be {spec.type}")
    return problems, values


def _result(d: Decision, r: inp.NodeResultReported) -> None:
    if not d.d.has_node(r.node_id):
        return d.ignore(r.event_id, UNKNOWN_NODE)
    run = d.work.nodes.get(r.node_id)
    if run is None or r.attempt != run.attempt:
        return d.ignore(r.event_id, STALE_ATTEMPT)
    if run.status not in ("scheduled", "started"):
        return d.ignore(r.event_id, DUPLICATE_RESULT)
    if r.status == "started":
        if run.status == "started":
            return d.ignore(r.event_id, DUPLICATE_RESULT)
        return d.emit(ev.NodeStarted, node_id=r.node_id, attempt=r.attempt)
    for call in r.model_calls:
        d.emit(ev.AgentModelCalled, node_id=r.node_id, attempt=r.attempt,
               provider=str(call.get("provider", "")), model=str(call.get("model", "")),
               input_tokens=int(call.get("input_tokens", 0)),
               output_tokens=int(call.get("output_tokens", 0)),
               cost_usd=float(call.get("cost_usd", 0.0)),
               latency_ms=int(call.get("latency_ms", 0)))  # fmt: skip
    for call in r.tool_calls:
        d.emit(ev.AgentToolCalled, node_id=r.node_id, attempt=r.attempt,
               tool=str(call.get("tool", "")), ok=bool(call.get("ok", True)),
               latency_ms=int(call.get("latency_ms", 0)))  # fmt: skip
    cnode = d.d.node(r.node_id)
    if r.status == "succeeded":
        return d.succeed(r.node_id, r.attempt, r.output)
    err = r.error or {}
    error = error_from(err)
    return d.attempt_failed(r.node_id, cnode, r.attempt, error)


def _timer(d: Decision, t: inp.TimerFired) -> None:
    timer = d.work.timers.get(t.timer_id)
    if timer is None:
        return d.ignore(t.event_id, STALE_TIMER)
    kind, node_id, attempt, due_iso = timer
    due_at = datetime.fromisoformat(due_iso)
    run = d.work.nodes.get(node_id) if node_id is not None else None
    if kind == "execution_timeout":
        d.emit(ev.TimerFired, timer_id=t.timer_id, kind=kind, node_id=None, attempt=None,
               due_at=due_at)
        error = {"type": "ExecutionTimeout", "message": "the execution timed out"}
        return d.emit(ev.ExecutionFailed, node_id=None, error=error)
    assert node_id is not None and attempt is not None
    live = {
        "retry": ("retry_wait",),
        "node_timeout": ("scheduled", "started", "waiting"),
        "delay": ("waiting",),
    }[kind]
    d.emit(ev.TimerFired, timer_id=t.timer_id, kind=kind, node_id=node_id, attempt=attempt,
           due_at=due_at)
    if run is None or run.attempt != attempt or run.status not in live:
        return None  # the attempt it guarded is over: the timer is spent, nothing else
    cnode = d.d.node(node_id)
    if kind == "retry":
        return d.begin_attempt(node_id, cnode, attempt + 1)
    if kind == "delay":
        return d.succeed(node_id, attempt, None)
    error = error_dict("Timeout", f"no result within {cnode.spec.timeout_ms} ms", True)
    return d.attempt_failed(node_id, cnode, attempt, error)


def _cancel(d: Decision, c: inp.CancelRequested) -> None:
    d.emit(ev.ExecutionCancelled, reason=c.reason)


def _retry_node(d: Decision, r: inp.RetryNodeRequested) -> None:
    run = d.work.nodes.get(r.node_id)
    if run is None or run.status != "dead_lettered" or not d.d.has_node(r.node_id):
        return d.ignore(r.event_id, NOT_DEAD_LETTERED)
    # Verified resolution: the incident stays open until the retried node succeeds
    # (`Decision.succeed` resolves it); a retry that fails again leaves it open.
    d.begin_attempt(r.node_id, d.d.node(r.node_id), run.attempt + 1)


def _resume(d: Decision, r: inp.ResumeRequested) -> None:
    if not d.work.incidents:
        return d.ignore(r.event_id, NO_INCIDENT)
    for incident_id, node_id in sorted(d.work.incidents.items()):
        d.emit(ev.IncidentResolved, incident_id=incident_id, node_id=node_id,
               resolution="resumed")  # fmt: skip
        d.node_finished(node_id)
    return None


def _event(d: Decision, e: inp.EventReceived) -> None:
    matched = False
    for node_id in _wait_nodes(d.d):
        cnode = d.d.nodes[node_id]
        if cnode.spec.config.get("event") != e.event_name:
            continue
        if e.node_id is not None and e.node_id != node_id:
            continue
        run = d.work.nodes.get(node_id)
        if run is None or run.status != "waiting" or not wait.matches(d, cnode, e.payload):
            continue
        matched = True
        d.succeed(node_id, run.attempt, e.payload)
    if not matched:
        d.ignore(e.event_id, NO_WAITING_NODE)


def _wait_nodes(definition: CompiledDefinition) -> tuple[str, ...]:
    return tuple(n for n, c in definition.nodes.items() if c.spec.type == "wait")


_HANDLERS: dict[type[inp.Input], Any] = {
    inp.NodeResultReported: _result,
    inp.TimerFired: _timer,
    inp.CancelRequested: _cancel,
    inp.RetryNodeRequested: _retry_node,
    inp.ResumeRequested: _resume,
    inp.EventReceived: _event,
    inp.ExecutionAdmitted: _admitted,
}

__all__ = ["check_input", "decide", "split_iteration"]
