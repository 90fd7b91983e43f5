"""Recorded histories cut into decisions, each with the input that caused it, rebuilt.

The audit store keeps execution events, not the orchestrator's inputs; but every decision's
events carry the input's id (`causation_id`) and enough of it to rebuild it exactly: the
trigger (`ExecutionStarted`: input, source, dedup key), node results (`AgentModelCalled`,
`AgentToolCalled`, then `NodeSucceeded`/`NodeFailed`/`LoopIterationCompleted`), fired timers,
operator commands (`ExecutionCancelled`, `IncidentResolved`) and outside events (a `wait`
node's success). An input that was ignored (`InputIgnored`) left no trace of its content;
its step has `input=None` and replays apply its recorded events as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowlog.aggregates.definition.compiled import CompiledDefinition
from flowlog.aggregates.execution import events as ev
from flowlog.aggregates.execution import inputs as inp
from flowlog.aggregates.execution.evolve import evolve
from flowlog.aggregates.execution.state import ExecutionState

Events = Sequence[ev.ExecutionEvent]


@dataclass(frozen=True, slots=True)
class Step:
    """One recorded decision: its input (rebuilt; None when it cannot be), when, and the
    events it produced. `kind`: trigger, admitted, result, timer, cancel, retry, resume,
    event, ignored or rejected."""

    at: datetime
    cause: str | None
    kind: str
    input: inp.Input | None
    events: tuple[ev.ExecutionEvent, ...]
    queued: bool = False  # a trigger that only queued the execution (flow control)

    @property
    def node_key(self) -> tuple[str, int] | None:
        """(node_id, attempt) of a node result."""
        if isinstance(self.input, inp.NodeResultReported):
            return self.input.node_id, self.input.attempt
        return None

    @property
    def first_seq(self) -> int:
        return self.events[0].seq


def groups(events: Events) -> list[list[ev.ExecutionEvent]]:
    """Consecutive events with the same causation id: one decision each."""
    out: list[list[ev.ExecutionEvent]] = []
    for e in events:
        if out and out[-1][0].causation_id == e.causation_id:
            out[-1].append(e)
        else:
            out.append([e])
    return out


def _model_call(e: ev.AgentModelCalled) -> dict[str, Any]:
    return {"provider": e.provider, "model": e.model, "input_tokens": e.input_tokens,
            "output_tokens": e.output_tokens, "cost_usd": e.cost_usd,
            "latency_ms": e.latency_ms}


def _tool_call(e: ev.AgentToolCalled) -> dict[str, Any]:
    return {"tool": e.tool, "ok": e.ok, "latency_ms": e.latency_ms}


def _event_name(node_id: str, definitions: Sequence[CompiledDefinition | None]) -> str | None:
    for d in definitions:
        if d is not None and d.has_node(node_id):
            name = d.node(node_id).spec.config.get("event")
            if name is not None:
                return str(name)
    return None


_CALLS = (ev.AgentModelCalled, ev.AgentToolCalled)


def _rebuild(group: list[ev.ExecutionEvent], before: ExecutionState,
             definitions: Sequence[CompiledDefinition | None]) -> tuple[str, inp.Input | None]:
    first = group[0]
    cause = first.causation_id or ""
    if isinstance(first, ev.ExecutionStarted | ev.ExecutionQueued) and before.phase == "pending":
        return "trigger", inp.TriggerReceived(
            event_id=cause, execution_id=first.execution_id, workflow_id=first.workflow_id,
            workflow_version=first.workflow_version, source=first.trigger_source,
            input=first.input, dedup_key=first.dedup_key,
            correlation_id=first.correlation_id, tenant=first.tenant)
    if isinstance(first, ev.ExecutionRejected):
        return "rejected", None  # the rejected input is not in the log
    if isinstance(first, ev.ExecutionStarted):
        return "admitted", inp.ExecutionAdmitted(event_id=cause)
    if isinstance(first, ev.TimerFired):
        return "timer", inp.TimerFired(event_id=cause, timer_id=first.timer_id,
                                       kind=first.kind, node_id=first.node_id,
                                       attempt=first.attempt, due_at=first.due_at)
    if isinstance(first, ev.ExecutionCancelled):
        return "cancel", inp.CancelRequested(event_id=cause, reason=first.reason)
    if isinstance(first, ev.IncidentResolved) and first.resolution == "resumed":
        return "resume", inp.ResumeRequested(event_id=cause)
    if isinstance(first, ev.InputIgnored):
        return "ignored", None
    node_id = getattr(first, "node_id", None)
    dead = before.nodes.get(node_id) if isinstance(node_id, str) else None
    if dead is not None and dead.status == "dead_lettered":
        # A retry of a dead-lettered node starts its next attempt at once (the incident is
        # resolved later, when that attempt succeeds).
        assert isinstance(node_id, str)
        return "retry", inp.RetryNodeRequested(event_id=cause, node_id=node_id)
    if isinstance(first, ev.NodeStarted):
        return "result", inp.NodeResultReported(event_id=cause, node_id=first.node_id,
                                                attempt=first.attempt, status="started")
    model_calls: tuple[dict[str, Any], ...] = ()
    tool_calls: tuple[dict[str, Any], ...] = ()
    end: ev.ExecutionEvent | None = first
    if type(first) in _CALLS:  # an agent's result: its calls come first
        model_calls = tuple(_model_call(e) for e in group if type(e) is ev.AgentModelCalled)
        tool_calls = tuple(_tool_call(e) for e in group if type(e) is ev.AgentToolCalled)
        end = next((e for e in group if type(e) not in _CALLS), None)
    if isinstance(end, ev.LoopIterationCompleted):
        node_id = f"{end.node_id}[{end.index}]"
        run = before.nodes.get(node_id)
        attempt = run.attempt if run is not None else 1
        output: Any = end.output
        status, error = "succeeded", None
    elif isinstance(end, ev.NodeSucceeded):
        node_id, attempt, output, status, error = end.node_id, end.attempt, end.output, \
            "succeeded", None
    elif isinstance(end, ev.NodeFailed):
        node_id, attempt, output, status, error = end.node_id, end.attempt, None, "failed", \
            end.error
    else:
        return "ignored", None
    run = before.nodes.get(node_id)
    if status == "succeeded" and run is not None and run.status == "waiting":
        name = _event_name(node_id, definitions)
        if name is None:
            return "event", None
        return "event", inp.EventReceived(event_id=cause, event_name=name, payload=output)
    return "result", inp.NodeResultReported(
        event_id=cause, node_id=node_id, attempt=attempt, status=status, output=output,
        error=error, model_calls=model_calls, tool_calls=tool_calls)


def recorded_steps(events: Events,
                   *definitions: CompiledDefinition | None) -> list[Step]:
    """The recorded decisions in order, each with its rebuilt input.

    `definitions` (the recorded one first, then others) only serve to name the outside event
    a `wait` node received (the log keeps the payload, the node's config keeps the name)."""
    return recorded_steps_and_state(events, *definitions)[0]


def recorded_steps_and_state(events: Events, *definitions: CompiledDefinition | None
                             ) -> tuple[list[Step], ExecutionState]:
    """`recorded_steps`, and the state the events fold to (one pass)."""
    state = ExecutionState()
    out = []
    for group in groups(events):
        kind, input_ = _rebuild(group, state, definitions)
        queued = kind == "trigger" and isinstance(group[0], ev.ExecutionQueued)
        out.append(Step(group[0].occurred_at, group[0].causation_id, kind, input_,
                        tuple(group), queued))
        for e in group:
            evolve(state, e)
    return out, state
