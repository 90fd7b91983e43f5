"""One decision in progress: a working copy of the state, the events so far, and the rules
every node type shares (schedule an attempt, fail an attempt, finish a node, cascade).

Each emitted event is applied to the working copy at once, so later rules in the same
decision see its effect; the caller's state is never touched.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta
from typing import Any

from flowlog.aggregates.definition.compiled import (
    CompiledDefinition,
    CompiledNode,
    split_iteration,
)
from flowlog.aggregates.errors import ExpressionError
from flowlog.aggregates.execution import events as ev
from flowlog.aggregates.execution.evolve import evolve
from flowlog.aggregates.execution.jsonvalue import error_dict, is_retryable, to_json
from flowlog.aggregates.execution.nodes import start_node
from flowlog.aggregates.execution.nodes.loop import iteration_vars, pump
from flowlog.aggregates.execution.nodes.parallel import check_join
from flowlog.aggregates.execution.state import TERMINAL, ExecutionState
from flowlog.aggregates.expressions import Expression
from flowlog.aggregates.ids import execution_event_id, task_key
from flowlog.aggregates.retry import deferred_due_at, retry_due_at

NodeVars = dict[str, Any]


class Decision:
    def __init__(
        self, state: ExecutionState, definition: CompiledDefinition | None, now: datetime,
        causation_id: str,
    ) -> None:  # fmt: skip
        self.work = state.clone()
        self.definition = definition
        self.now = now
        self.cause = causation_id
        self.events: list[ev.ExecutionEvent] = []
        self._done: deque[str] = deque()

    # --- emitting --------------------------------------------------------------------
    def emit(self, cls: type[ev.ExecutionEvent], **fields: Any) -> None:
        w = self.work
        seq = w.seq + 1
        event = cls(
            event_id=execution_event_id(w.execution_id, seq),
            seq=seq,
            occurred_at=self.now,
            execution_id=w.execution_id,
            workflow_id=w.workflow_id,
            workflow_version=w.workflow_version,
            correlation_id=w.correlation_id,
            causation_id=self.cause,
            tenant=w.tenant,
            **fields,
        )
        evolve(w, event)
        self.events.append(event)

    def ignore(self, input_event_id: str, reason: str) -> None:
        self.emit(ev.InputIgnored, input_event_id=input_event_id, reason=reason)

    @property
    def d(self) -> CompiledDefinition:
        assert self.definition is not None
        return self.definition

    # --- expressions -----------------------------------------------------------------
    def variables(self, expr: Expression, extra: NodeVars | None = None) -> dict[str, Any]:
        w = self.work
        names = expr.variables
        out: dict[str, Any] = dict(extra) if extra else {}
        if "inputs" in names:
            out["inputs"] = w.input
        if "nodes" in names:
            refs = expr.node_refs if expr.node_refs is not None else self.d.nodes.keys()
            view = {}
            for ref in refs:
                run = w.nodes.get(ref)
                if run is None:
                    view[ref] = {"status": "pending", "output": None}
                else:
                    view[ref] = {"status": run.status, "output": run.output}
            out["nodes"] = view
        if "execution" in names:
            out["execution"] = {
                "id": w.execution_id, "workflow_id": w.workflow_id,
                "workflow_version": w.workflow_version, "now": self.now.isoformat(),
            }  # fmt: skip
        return out

    def evaluate(self, expr: Expression, extra: NodeVars | None = None) -> Any:
        return to_json(expr.evaluate(self.variables(expr, extra)))

    def node_input(self, cnode: CompiledNode, extra: NodeVars | None = None) -> dict[str, Any]:
        return {key: self.evaluate(expr, extra) for key, expr in cnode.inputs}

    # --- the node-attempt lifecycle --------------------------------------------------
    def begin_attempt(self, node_id: str, cnode: CompiledNode, attempt: int) -> None:
        """Schedule a task (side-effect node) or start waiting (wait node)."""
        extra = self.iteration_vars(node_id)
        spec = cnode.spec
        if spec.type == "wait":
            self.emit(ev.NodeStarted, node_id=node_id, attempt=attempt)
        else:
            try:
                node_input = self.node_input(cnode, extra)
            except ExpressionError as exc:
                self.attempt_failed(node_id, cnode, attempt, _expr_error(exc))
                return
            self.emit(ev.NodeScheduled, node_id=node_id, node_type=spec.type, attempt=attempt,
                      input=node_input,
                      task_key=task_key(self.work.execution_id, node_id, attempt))  # fmt: skip
        if spec.timeout_ms is not None:
            self.set_timer("node_timeout", node_id, attempt, spec.timeout_ms)

    def set_timer(self, kind: str, node_id: str | None, attempt: int | None, ms: int) -> None:
        timer_id = kind if node_id is None else f"{kind}:{node_id}:{attempt}"
        self.emit(ev.TimerSet, timer_id=timer_id, kind=kind, node_id=node_id, attempt=attempt,
                  due_at=self.now + timedelta(milliseconds=ms))  # fmt: skip

    def attempt_failed(
        self, node_id: str, cnode: CompiledNode, attempt: int, error: dict[str, Any]
    ) -> None:
        """Record a failed attempt, then retry, or apply the node's failure policy."""
        self.emit(ev.NodeFailed, node_id=node_id, attempt=attempt, error=error)
        spec = cnode.spec
        deferred_to = error.get("retry_at")
        if deferred_to is not None and is_retryable(error):
            # never reached the target (open breaker): retry at its half-open time, spread a
            # little so that the waiting attempts do not all arrive at once; no attempt used
            due = deferred_due_at(datetime.fromisoformat(str(deferred_to)), self.now,
                                  self.work.execution_id, node_id, attempt)
            self.emit(ev.NodeRetryScheduled, node_id=node_id, attempt=attempt,
                      next_attempt=attempt + 1, due_at=due)  # fmt: skip
            self.emit(ev.TimerSet, timer_id=f"retry:{node_id}:{attempt}", kind="retry",
                      node_id=node_id, attempt=attempt, due_at=due)  # fmt: skip
            return
        spent = self.work.attempts_spent(node_id, attempt)
        if is_retryable(error) and spent < spec.retry.max_attempts:
            due = retry_due_at(spec.retry, self.work.execution_id, node_id, spent, self.now)
            self.emit(ev.NodeRetryScheduled, node_id=node_id, attempt=attempt,
                      next_attempt=attempt + 1, due_at=due)  # fmt: skip
            self.emit(ev.TimerSet, timer_id=f"retry:{node_id}:{attempt}", kind="retry",
                      node_id=node_id, attempt=attempt, due_at=due)  # fmt: skip
            return
        if spec.on_failure == "continue":
            self.node_finished(node_id)
        elif spec.on_failure == "dead_letter":
            self.emit(ev.NodeDeadLettered, node_id=node_id, attempt=attempt, error=error)
            if not self.open_incidents(node_id):  # a failed retry: its incident stays open
                self.emit(ev.IncidentRaised, incident_id=f"{node_id}:{attempt}",
                          node_id=node_id,
                          reason=f"{error.get('type')}: {error.get('message')}")  # fmt: skip
        else:
            self.emit(ev.ExecutionFailed, node_id=node_id,
                      error={"type": error.get("type", "Error"),
                             "message": error.get("message", "")})  # fmt: skip

    def fail_pure(self, node_id: str, cnode: CompiledNode, error: dict[str, Any]) -> None:
        """A pure node could not be evaluated: a definition bug, never retried."""
        self.attempt_failed(node_id, cnode, max(self.attempt_of(node_id), 1), error)

    def succeed(self, node_id: str, attempt: int, output: Any) -> None:
        loop_id, index = split_iteration(node_id)
        if index is not None:
            self.emit(ev.LoopIterationCompleted, node_id=loop_id, index=index, output=output)
            self.resolve_retried(node_id)
            self.pump_loop(loop_id)
        else:
            self.emit(ev.NodeSucceeded, node_id=node_id, attempt=attempt, output=output)
            self.resolve_retried(node_id)
            self._done.append(node_id)

    def open_incidents(self, node_id: str) -> list[str]:
        """The ids of the incidents open on ``node_id`` (dead-lettered, maybe retrying)."""
        incidents = self.work.incidents
        return sorted(i for i, n in incidents.items() if n == node_id) if incidents else []

    def resolve_retried(self, node_id: str) -> None:
        """Verified resolution: a node's incident resolves when a retry of it succeeds."""
        for incident_id in self.open_incidents(node_id):
            self.emit(ev.IncidentResolved, incident_id=incident_id, node_id=node_id,
                      resolution="retried")  # fmt: skip

    def node_finished(self, node_id: str) -> None:
        """A node reached a terminal status without output (failed and continue, skipped)."""
        loop_id, index = split_iteration(node_id)
        if index is not None:
            self.emit(ev.LoopIterationCompleted, node_id=loop_id, index=index, output=None)
            self.pump_loop(loop_id)
        else:
            self._done.append(node_id)

    def skip(self, node_id: str, reason: str) -> None:
        self.emit(ev.NodeSkipped, node_id=node_id, reason=reason)
        self.node_finished(node_id)

    def attempt_of(self, node_id: str) -> int:
        run = self.work.nodes.get(node_id)
        return run.attempt if run is not None else 0

    # --- readiness and the cascade ---------------------------------------------------
    def drain(self) -> None:
        """Follow finished nodes to their dependents until nothing more is ready."""
        nodes = self.work.nodes
        while self._done and self.work.phase == "active":
            finished = self._done.popleft()
            for dep in self.d.nodes[finished].dependents:
                if self.work.phase != "active":
                    return
                cdep = self.d.nodes[dep]
                run = nodes.get(dep)
                if cdep.spec.type == "parallel":
                    if run is None:
                        check_join(self, dep, cdep)
                    continue
                if run is not None:
                    continue
                skipped = 0
                for need in cdep.spec.needs:
                    need_run = nodes.get(need)
                    if need_run is None or need_run.status not in TERMINAL:
                        break
                    skipped += need_run.status == "skipped"
                else:
                    if skipped == len(cdep.spec.needs):
                        self.skip(dep, "all needs skipped")
                    else:
                        start_node(self, dep, cdep)

    def start_roots(self) -> None:
        for root in self.d.roots:
            if self.work.phase != "active":
                return
            if root not in self.work.nodes:
                start_node(self, root, self.d.nodes[root])
        self.drain()

    def settle(self) -> None:
        """Finish the execution when every node is terminal."""
        w = self.work
        if w.phase != "active" or w.terminal != len(self.d.nodes):
            return
        try:
            output = {key: self.evaluate(expr) for key, expr in self.d.outputs}
        except ExpressionError as exc:
            self.emit(ev.ExecutionFailed, node_id=None,
                      error={"type": "OutputError", "message": str(exc)})  # fmt: skip
            return
        self.emit(ev.ExecutionSucceeded, output=output)

    # --- loops (the bookkeeping lives in nodes/loop.py) --------------------------------
    def pump_loop(self, loop_id: str) -> None:
        pump(self, loop_id, self.d.nodes[loop_id])

    def iteration_vars(self, node_id: str) -> NodeVars | None:
        loop_id, index = split_iteration(node_id)
        if index is None:
            return None
        return iteration_vars(self, loop_id, self.d.nodes[loop_id], index)


def _expr_error(exc: ExpressionError) -> dict[str, Any]:
    return error_dict("ExpressionError", str(exc), False)
