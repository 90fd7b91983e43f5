"""`evolve(state, event) -> state`: the fold. Knows nothing of definitions, clocks or I/O.

For speed it updates `state` in place and returns it; records inside are replaced, never
changed, which is what makes `ExecutionState.clone()` cheap and `decide` side-effect free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flowlog.aggregates.execution import events as ev
from flowlog.aggregates.execution.state import TERMINAL, ExecutionState, LoopRun, NodeRun


def _set_run(state: ExecutionState, node_id: str, run: NodeRun) -> None:
    old = state.nodes.get(node_id)
    state.nodes[node_id] = run
    if "[" in node_id:  # loop iterations do not count toward completion
        return
    was = old is not None and old.status in TERMINAL
    now = run.status in TERMINAL
    if now and not was:
        state.terminal += 1
    elif was and not now:
        state.terminal -= 1


def _attempt(state: ExecutionState, node_id: str) -> int:
    run = state.nodes.get(node_id)
    return run.attempt if run is not None else 0


def _identify(state: ExecutionState, e: ev.ExecutionEvent) -> None:
    """The envelope fields an execution takes from its first event."""
    state.execution_id = e.execution_id
    state.workflow_id = e.workflow_id
    state.workflow_version = e.workflow_version
    state.tenant = e.tenant
    state.correlation_id = e.correlation_id


def _started(state: ExecutionState, e: ev.ExecutionStarted) -> None:
    _identify(state, e)
    state.phase = "active"
    state.input = e.input
    state.started_at = e.occurred_at


def _queued(state: ExecutionState, e: ev.ExecutionQueued) -> None:
    _identify(state, e)
    state.phase = "queued"
    state.input = e.input
    state.trigger_source = e.trigger_source
    state.dedup_key = e.dedup_key


def _rejected(state: ExecutionState, e: ev.ExecutionRejected) -> None:
    _identify(state, e)
    state.phase = "rejected"
    state.error = {"type": "Rejected", "message": e.reason}
    state.finished_at = e.occurred_at


def _scheduled(state: ExecutionState, e: ev.NodeScheduled) -> None:
    _set_run(state, e.node_id, NodeRun("scheduled", e.attempt))


def _node_started(state: ExecutionState, e: ev.NodeStarted) -> None:
    old = state.nodes.get(e.node_id)
    # A task reports `started` after it was scheduled; a wait node starts by waiting.
    status = "started" if old is not None and old.status == "scheduled" else "waiting"
    _set_run(state, e.node_id, NodeRun(status, e.attempt))


def _drop_timeout(state: ExecutionState, node_id: str, attempt: int) -> None:
    # The attempt is over, so its timeout timer is spent; a late firing is ignored.
    if state.timers:
        state.timers.pop(f"node_timeout:{node_id}:{attempt}", None)


def _succeeded(state: ExecutionState, e: ev.NodeSucceeded) -> None:
    _set_run(state, e.node_id, NodeRun("succeeded", e.attempt, e.output))
    _drop_timeout(state, e.node_id, e.attempt)


def _failed(state: ExecutionState, e: ev.NodeFailed) -> None:
    _set_run(state, e.node_id, NodeRun("failed", e.attempt, None, e.error))
    if e.error.get("retry_at") is not None:  # never reached the target: uses no attempt
        state.deferrals[e.node_id] = state.deferrals.get(e.node_id, 0) + 1
    _drop_timeout(state, e.node_id, e.attempt)


def _retry(state: ExecutionState, e: ev.NodeRetryScheduled) -> None:
    old = state.nodes[e.node_id]
    _set_run(state, e.node_id, NodeRun("retry_wait", e.attempt, None, old.error))


def _dead(state: ExecutionState, e: ev.NodeDeadLettered) -> None:
    _set_run(state, e.node_id, NodeRun("dead_lettered", e.attempt, None, e.error))


def _skipped(state: ExecutionState, e: ev.NodeSkipped) -> None:
    _set_run(state, e.node_id, NodeRun("skipped", _attempt(state, e.node_id)))


def _branch(state: ExecutionState, e: ev.BranchDecided) -> None:
    output = {"branch": e.branch, "targets": list(e.targets)}
    _set_run(state, e.node_id, NodeRun("succeeded", 1, output))


def _iter_started(state: ExecutionState, e: ev.LoopIterationStarted) -> None:
    lr = state.loops.get(e.node_id) or LoopRun()
    state.loops[e.node_id] = LoopRun(max(lr.next_index, e.index + 1), lr.active | {e.index},
                                     lr.outputs)  # fmt: skip
    if e.node_id not in state.nodes:
        _set_run(state, e.node_id, NodeRun("running", 1))


def _iter_done(state: ExecutionState, e: ev.LoopIterationCompleted) -> None:
    lr = state.loops[e.node_id]
    outputs = dict(lr.outputs)
    outputs[e.index] = e.output
    state.loops[e.node_id] = LoopRun(lr.next_index, lr.active - {e.index}, outputs)
    iter_id = f"{e.node_id}[{e.index}]"
    run = state.nodes.get(iter_id)
    if run is None or run.status not in TERMINAL:
        _set_run(state, iter_id, NodeRun("succeeded", _attempt(state, iter_id), e.output))
        _drop_timeout(state, iter_id, _attempt(state, iter_id))


def _timer_set(state: ExecutionState, e: ev.TimerSet) -> None:
    state.timers[e.timer_id] = (e.kind, e.node_id, e.attempt, e.due_at.isoformat())
    if e.kind == "delay" and e.node_id is not None:
        _set_run(state, e.node_id, NodeRun("waiting", e.attempt or 1))


def _timer_fired(state: ExecutionState, e: ev.TimerFired) -> None:
    state.timers.pop(e.timer_id, None)


def _model_called(state: ExecutionState, e: ev.AgentModelCalled) -> None:
    u = state.usage
    u["model_calls"] = u.get("model_calls", 0) + 1
    u["input_tokens"] = u.get("input_tokens", 0) + e.input_tokens
    u["output_tokens"] = u.get("output_tokens", 0) + e.output_tokens
    u["cost_usd"] = round(u.get("cost_usd", 0.0) + e.cost_usd, 9)


def _tool_called(state: ExecutionState, e: ev.AgentToolCalled) -> None:
    state.usage["tool_calls"] = state.usage.get("tool_calls", 0) + 1


def _ignored(state: ExecutionState, e: ev.InputIgnored) -> None:
    pass


def _incident(state: ExecutionState, e: ev.IncidentRaised) -> None:
    state.incidents[e.incident_id] = e.node_id


def _resolved(state: ExecutionState, e: ev.IncidentResolved) -> None:
    state.incidents.pop(e.incident_id, None)
    if e.resolution == "resumed":  # continue past the node: it ends failed, output null
        old = state.nodes[e.node_id]
        _set_run(state, e.node_id, NodeRun("failed", old.attempt, None, old.error))


def _exec_succeeded(state: ExecutionState, e: ev.ExecutionSucceeded) -> None:
    state.phase = "succeeded"
    state.output = e.output
    state.timers = {}
    state.finished_at = e.occurred_at


def _exec_failed(state: ExecutionState, e: ev.ExecutionFailed) -> None:
    state.phase = "failed"
    state.error = e.error
    state.timers = {}
    state.failed_node = e.node_id
    state.finished_at = e.occurred_at


def _cancelled(state: ExecutionState, e: ev.ExecutionCancelled) -> None:
    state.phase = "cancelled"
    state.timers = {}
    state.error = {"type": "Cancelled", "message": e.reason}
    state.finished_at = e.occurred_at


_HANDLERS: dict[type[ev.ExecutionEvent], Callable[[ExecutionState, Any], None]] = {
    ev.ExecutionStarted: _started,
    ev.ExecutionQueued: _queued,
    ev.ExecutionRejected: _rejected,
    ev.NodeScheduled: _scheduled,
    ev.NodeStarted: _node_started,
    ev.NodeSucceeded: _succeeded,
    ev.NodeFailed: _failed,
    ev.NodeRetryScheduled: _retry,
    ev.NodeDeadLettered: _dead,
    ev.NodeSkipped: _skipped,
    ev.BranchDecided: _branch,
    ev.LoopIterationStarted: _iter_started,
    ev.LoopIterationCompleted: _iter_done,
    ev.TimerSet: _timer_set,
    ev.TimerFired: _timer_fired,
    ev.AgentModelCalled: _model_called,
    ev.AgentToolCalled: _tool_called,
    ev.InputIgnored: _ignored,
    ev.IncidentRaised: _incident,
    ev.IncidentResolved: _resolved,
    ev.ExecutionSucceeded: _exec_succeeded,
    ev.ExecutionFailed: _exec_failed,
    ev.ExecutionCancelled: _cancelled,
}


def evolve(state: ExecutionState, event: ev.ExecutionEvent) -> ExecutionState:
    """Apply one event (in place) and return the state. Events must come in `seq` order."""
    if event.seq != state.seq + 1:
        raise ValueError(
            f"event seq {event.seq} does not follow {state.seq} in execution "
            f"{event.execution_id!r}: events must be applied in order, without gaps"
        )
    _HANDLERS[type(event)](state, event)
    state.seq = event.seq
    if event.causation_id is not None:
        state.applied.add(event.causation_id)
    return state


def fold(
    events: Iterable[ev.ExecutionEvent], state: ExecutionState | None = None
) -> ExecutionState:
    """Replay `events` onto `state` (a fresh state by default)."""
    result = state if state is not None else ExecutionState()
    for event in events:
        evolve(result, event)
    return result
