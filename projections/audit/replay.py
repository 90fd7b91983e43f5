"""Replays of recorded histories, with no side effects: the determinism check (`verify`)
and the what-if (`what_if`). Pure: events and compiled definitions in, reports out.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowlog.aggregates.definition.compiled import CompiledDefinition
from flowlog.aggregates.execution import events as ev
from flowlog.aggregates.execution import inputs as inp
from flowlog.aggregates.execution.events import event_to_dict
from flowlog.aggregates.execution.evolve import evolve
from flowlog.aggregates.execution.state import ExecutionState
from flowlog.aggregates.records import event_to_record, record_to_event
from flowlog.projections.audit.steps import (
    Events,
    Step,
    recorded_steps,
    recorded_steps_and_state,
)

Decide = Callable[..., list[ev.ExecutionEvent]]
TASK_TYPES = frozenset({"agent", "tool", "webhook", "subworkflow"})


def _decide() -> Decide:
    # Looked up at call time, so a test can swap the engine's decide for a changed one.
    module = importlib.import_module("flowlog.aggregates.execution.decide")
    found: Decide = module.decide
    return found


# --- the determinism check -------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Mismatch:
    """The first decision whose re-decided events differ from the recorded ones."""

    execution_id: str
    seq: int
    cause: str | None
    input_kind: str
    recorded: list[dict[str, Any]]
    decided: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _wire(e: ev.ExecutionEvent) -> dict[str, Any]:
    """The event as execution-events carries it (the wire mapping normalises errors), so
    an event decided now compares equal to the same event read back from the log."""
    return event_to_dict(record_to_event(event_to_record(e)))


def verify(events: Events, definition: CompiledDefinition) -> Mismatch | None:
    """Re-decide every recorded decision with today's `decide` and the recorded definition;
    None when every decision gives the recorded events again, else the first that does not.
    Decisions whose input the log cannot rebuild (ignored inputs) are applied as recorded."""
    decide = _decide()
    state = ExecutionState()
    for step in recorded_steps(events, definition):
        if step.input is not None:
            kwargs: dict[str, Any] = {"queue": True} if step.queued else {}
            if step.kind == "trigger" and not step.queued:
                kwargs["queue"] = False
            produced = decide(state, step.input, step.at, definition, **kwargs)
            recorded = [_wire(e) for e in step.events]
            decided = [_wire(e) for e in produced]
            if decided != recorded:
                return Mismatch(step.events[0].execution_id, step.first_seq, step.cause,
                                step.kind, recorded, decided)
        for e in step.events:
            evolve(state, e)
    return None


# --- what-if -------------------------------------------------------------------------------

@dataclass(slots=True)
class WhatIf:
    """What a recorded execution would have done under another definition."""

    execution_id: str
    workflow_id: str
    recorded_version: int
    what_if_version: int
    recorded_outcome: dict[str, Any]
    what_if_outcome: dict[str, Any]
    nodes: list[dict[str, Any]] = field(default_factory=list)  # only nodes that differ
    needs_call: list[dict[str, Any]] = field(default_factory=list)
    first_divergence: dict[str, Any] | None = None
    unused_results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.nodes) or self.outcome_changed or self.first_divergence is not None

    @property
    def outcome_changed(self) -> bool:
        return self.recorded_outcome != self.what_if_outcome

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["changed"] = self.changed
        out["outcome_changed"] = self.outcome_changed
        return out


_ENVELOPE = ("event_id", "seq", "occurred_at", "execution_id", "workflow_id",
             "workflow_version", "correlation_id", "causation_id", "tenant")


def _shape(e: ev.ExecutionEvent) -> dict[str, Any]:
    d = _wire(e) if getattr(e, "error", None) is not None else event_to_dict(e)
    for k in _ENVELOPE:
        d.pop(k, None)
    return d


_FIELDS: dict[type, tuple[str, ...]] = {}


def _same(x: ev.ExecutionEvent, y: ev.ExecutionEvent) -> bool:
    """The same event but for the envelope (ids, version, time): compared field by field."""
    cls = type(x)
    if cls is not type(y):
        return False
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls)
                                     if f.name not in _ENVELOPE)
    return all(getattr(x, n) == getattr(y, n) for n in names)


def _outcome(state: ExecutionState) -> dict[str, Any]:
    # an error compares by type and message (the wire may add or default other fields)
    error = state.error
    if error is not None:
        error = {"type": error.get("type"), "message": error.get("message")}
    return {"status": state.status, "output": state.output, "error": error}


def _node(state: ExecutionState, node_id: str) -> dict[str, Any]:
    run = state.nodes.get(node_id)
    if run is None:
        return {"status": "not reached", "attempt": 0, "output": None}
    return {"status": run.status, "attempt": run.attempt, "output": run.output}


class _Sim:
    """The new definition's run, fed the recorded inputs."""

    def __init__(self, definition: CompiledDefinition, decide: Decide) -> None:
        self.d = definition
        self.decide = decide
        self.state = ExecutionState()
        self.events: list[ev.ExecutionEvent] = []
        self.now: datetime | None = None
        self.results: dict[tuple[str, int], deque[Step]] = {}
        self.inputs: dict[tuple[str, int], Any] = {}  # node inputs of the new run

    def send(self, input_: inp.Input, at: datetime, **kwargs: Any) -> None:
        self.now = at if self.now is None or at > self.now else self.now
        for e in self.decide(self.state, input_, self.now, self.d, **kwargs):
            evolve(self.state, e)
            self.events.append(e)
            if isinstance(e, ev.NodeScheduled):
                self.inputs[(e.node_id, e.attempt)] = e.input

    def pump(self, recorded_inputs: dict[tuple[str, int], Any]) -> None:
        """Feed every buffered recorded result whose task the new run is waiting for with
        the same node input as recorded."""
        fed = True
        while fed and self.state.phase == "active":
            fed = False
            for key, queue in self.results.items():
                run = self.state.nodes.get(key[0])
                if not queue or run is None or run.attempt != key[1]:
                    continue
                if run.status not in ("scheduled", "started"):
                    continue
                if self.inputs.get(key) != recorded_inputs.get(key):
                    continue
                step = queue.popleft()
                assert step.input is not None
                self.send(step.input, step.at)
                fed = True
                break


_FINISHING = (ev.NodeSucceeded, ev.NodeFailed, ev.NodeSkipped, ev.BranchDecided,
              ev.LoopIterationCompleted, ev.NodeDeadLettered, ev.IncidentResolved)
_TERMINAL = (ev.ExecutionSucceeded, ev.ExecutionFailed)


def _reads_execution(d: CompiledDefinition) -> bool:
    def exprs(cnode: Any) -> Iterable[Any]:
        yield from (e for _, e in cnode.inputs)
        yield from cnode.exprs.values()
        if cnode.body is not None:
            yield from exprs(cnode.body)

    found = any("execution" in e.variables for c in d.nodes.values() for e in exprs(c))
    return found or any("execution" in e.variables for _, e in d.outputs)


_Delta = tuple[frozenset[str], frozenset[str], bool]
_DELTAS: dict[tuple[int, int], tuple[CompiledDefinition, CompiledDefinition, _Delta | None]] = {}


def _delta(old: CompiledDefinition, new: CompiledDefinition) -> _Delta | None:
    """(nodes whose spec changed, nodes whose finishing matters, outputs changed); None
    when no decision is certain to stay the same. Memoised per pair (a batch asks often)."""
    key = (id(old), id(new))
    hit = _DELTAS.get(key)
    if hit is not None and hit[0] is old and hit[1] is new:
        return hit[2]
    result: _Delta | None = None
    if not (old.roots != new.roots or old.spec.inputs != new.spec.inputs
            or old.timeout_ms != new.timeout_ms or old.max_executions != new.max_executions
            or _reads_execution(old) or _reads_execution(new)):
        changed: set[str] = set()
        finishing: set[str] = set()
        for node_id in old.nodes.keys() | new.nodes.keys():
            a, b = old.nodes.get(node_id), new.nodes.get(node_id)
            if a is None or b is None or a.spec != b.spec:
                changed.add(node_id)
                for c in (a, b):
                    if c is not None:
                        finishing.update(c.spec.needs)
            elif a.dependents != b.dependents:
                finishing.add(node_id)
        outputs_changed = [(k, e.source) for k, e in old.outputs] != \
            [(k, e.source) for k, e in new.outputs]
        result = (frozenset(changed), frozenset(finishing), outputs_changed)
    if len(_DELTAS) > 64:
        _DELTAS.clear()
    _DELTAS[key] = (old, new, result)  # the definitions are kept: their ids stay theirs
    return result


def unchanged_prefix(steps: Sequence[Step], old: CompiledDefinition | None,
                     new: CompiledDefinition) -> int:
    """How many recorded decisions the new definition is certain to decide the same way, so
    a what-if may apply them as recorded instead of deciding them again.

    A decision consults the definition only for the nodes it starts, advances or finishes
    (their specs), for the dependents of the nodes it finishes (their `needs`), and for the
    outputs when the execution ends. So the prefix ends at the first decision that mentions
    a node whose spec changed, finishes a node whose dependents changed or that a changed
    node needs, or ends the execution when the outputs changed; at once when the roots,
    inputs, timeout or flow control changed, or when an expression reads `execution` (the
    version differs). Commands, outside events and ignored inputs end it too (they consult
    more of the definition)."""
    if old is None or old.workflow_id != new.workflow_id or not steps:
        return 0
    first = steps[0].events[0]
    if (first.workflow_id, first.workflow_version) != (old.workflow_id, old.version):
        return 0  # not the definition the recording ran with
    delta = _delta(old, new)
    if delta is None:
        return 0
    changed, finishing, outputs_changed = delta
    for index, step in enumerate(steps):
        if step.kind not in ("trigger", "result", "timer"):
            return index
        for e in step.events:
            node_id = getattr(e, "node_id", None)
            if node_id is not None:
                base = node_id.split("[", 1)[0]
                if base in changed or (base in finishing and isinstance(e, _FINISHING)):
                    return index
            if outputs_changed and isinstance(e, _TERMINAL):
                return index
    return len(steps)


def what_if(events: Events, definition: CompiledDefinition,
            recorded_definition: CompiledDefinition | None = None, *,
            skip_unchanged: bool = True) -> WhatIf:
    """Feed the recorded trigger, node results, timers, commands and outside events through
    `definition`. A recorded node result is used only when the new run schedules the same
    node attempt with the same input; a task the recording cannot answer is listed in
    `needs_call` (the run stops there, as it would wait for the outside call)."""
    decide = _decide()
    steps, recorded = recorded_steps_and_state(events, recorded_definition, definition)
    recorded_inputs = {(e.node_id, e.attempt): e.input for e in events
                       if isinstance(e, ev.NodeScheduled)}
    sim = _Sim(definition, decide)
    start = unchanged_prefix(steps, recorded_definition, definition) if skip_unchanged else 0
    for step in steps[:start]:  # decided as recorded, certainly: applied, not re-decided
        for e in step.events:
            evolve(sim.state, e)
            sim.events.append(e)
            if isinstance(e, ev.NodeScheduled):
                sim.inputs[(e.node_id, e.attempt)] = e.input
        sim.now = step.at
    if start:
        sim.state.workflow_version = definition.version
    for step in steps[start:]:
        s = sim.state
        i = step.input
        if i is None:
            continue
        if isinstance(i, inp.TriggerReceived):
            i = dataclasses.replace(i, workflow_version=definition.version)
            sim.send(i, step.at, queue=step.queued)
        elif isinstance(i, inp.NodeResultReported):
            sim.results.setdefault((i.node_id, i.attempt), deque()).append(step)
        elif isinstance(i, inp.TimerFired):
            if i.timer_id in s.timers:
                sim.send(i, step.at)
        elif isinstance(i, inp.EventReceived):
            if any(r.status == "waiting" for r in s.nodes.values()):
                sim.send(i, step.at)
        elif isinstance(i, inp.RetryNodeRequested):
            run = s.nodes.get(i.node_id)
            if run is not None and run.status == "dead_lettered":
                sim.send(i, step.at)
        elif isinstance(i, inp.ResumeRequested):
            if s.incidents:
                sim.send(i, step.at)
        elif isinstance(i, inp.ExecutionAdmitted):
            if s.phase == "queued":
                sim.send(i, step.at)
        else:
            sim.send(i, step.at)
        sim.pump(recorded_inputs)
    return _report(events, recorded, sim, recorded_inputs)


def _report(events: Events, recorded: ExecutionState, sim: _Sim,
            recorded_inputs: dict[tuple[str, int], Any]) -> WhatIf:
    new = sim.state
    report = WhatIf(recorded.execution_id, recorded.workflow_id, recorded.workflow_version,
                    sim.d.version, _outcome(recorded), _outcome(new))
    for node_id in sorted(recorded.nodes.keys() | new.nodes.keys()):
        a, b = _node(recorded, node_id), _node(new, node_id)
        if a != b:
            report.nodes.append({"node_id": node_id, "recorded": a, "what_if": b})
    for node_id, run in sorted(new.nodes.items()):
        if run.status not in ("scheduled", "started"):
            continue
        key = (node_id, run.attempt)
        if key not in recorded_inputs:
            reason = "no recorded result for this node attempt"
        elif sim.inputs.get(key) != recorded_inputs[key]:
            reason = "its input differs from the recorded call"
        else:
            reason = "the recorded call has no result"
        report.needs_call.append({"node_id": node_id, "attempt": run.attempt,
                                  "input": sim.inputs.get(key), "reason": reason})
    for (node_id, attempt), queue in sorted(sim.results.items()):
        for step in queue:
            if isinstance(step.input, inp.NodeResultReported) and \
                    step.input.status != "started":
                report.unused_results.append({"node_id": node_id, "attempt": attempt,
                                              "seq": step.first_seq})
    # Decisions compared in order; ignored inputs are left out on both sides (the log
    # does not keep what they were, so the replay cannot send them again).
    was_events = [e for e in events if not isinstance(e, ev.InputIgnored)]
    now_events = [e for e in sim.events if not isinstance(e, ev.InputIgnored)]
    for index in range(max(len(was_events), len(now_events))):
        x = was_events[index] if index < len(was_events) else None
        y = now_events[index] if index < len(now_events) else None
        if x is not None and y is not None and (x is y or _same(x, y)
                                                or _shape(x) == _shape(y)):
            continue
        report.first_divergence = {
            "recorded_seq": x.seq if x is not None else None,
            "recorded": _shape(x) if x is not None else None,
            "what_if": _shape(y) if y is not None else None}
        break
    return report


@dataclass(slots=True)
class WhatIfSummary:
    total: int = 0
    changed: int = 0
    outcome_changed: int = 0
    needing_calls: int = 0
    failed: int = 0
    changed_ids: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)

    def add(self, report: WhatIf, keep: int = 50) -> None:
        self.total += 1
        if report.changed:
            self.changed += 1
            if len(self.changed_ids) < keep:
                self.changed_ids.append(report.execution_id)
        self.outcome_changed += report.outcome_changed
        self.needing_calls += bool(report.needs_call)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def what_if_many(histories: Iterable[tuple[str, Sequence[ev.ExecutionEvent]]],
                 definition: CompiledDefinition,
                 recorded_definition: Callable[[str, int], CompiledDefinition | None],
                 on_done: Callable[[WhatIf | None], None] | None = None) -> WhatIfSummary:
    """The batch form: a summary over many executions (an execution that cannot be replayed
    is counted in `failed` with the reason, never stops the batch)."""
    summary = WhatIfSummary()
    for execution_id, events in histories:
        report: WhatIf | None = None
        try:
            first = events[0]
            report = what_if(events, definition,
                             recorded_definition(first.workflow_id, first.workflow_version))
            summary.add(report)
        except Exception as exc:  # one bad history must not stop a batch of thousands
            summary.total += 1
            summary.failed += 1
            summary.errors.append({"execution_id": execution_id,
                                   "error": f"{type(exc).__name__}: {exc}"})
        if on_done is not None:
            on_done(report)
    return summary
