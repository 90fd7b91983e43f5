"""Lineage of one execution's events, as trees: what an event (or input) caused, and what
caused it. Pure: built from the events, their causation ids and the rebuilt inputs.

Links: a decision's input → the events it produced (`causation_id`); a `NodeScheduled` →
the node results for that attempt (and, for a subworkflow node, the child execution whose
dedup key is the task key); a `TimerSet` → the `TimerFired` input; an `IncidentRaised` →
the operator command that resolved it; a waiting node → the outside event that woke it.
Retries show as `NodeRetryScheduled` → `TimerSet` → `TimerFired` → the next `NodeScheduled`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowlog.aggregates.execution import events as ev
from flowlog.aggregates.execution import inputs as inp
from flowlog.projections.audit.steps import Events, Step, recorded_steps

_LABELS = {"trigger": "TriggerReceived", "admitted": "ExecutionAdmitted",
           "timer": "TimerFired", "cancel": "CancelRequested",
           "retry": "RetryNodeRequested", "resume": "ResumeRequested",
           "event": "EventReceived", "ignored": "ignored input", "rejected": "TriggerReceived"}


@dataclass(slots=True)
class Node:
    kind: str  # input, event, execution
    id: str
    label: str
    seq: int | None = None
    at: str | None = None
    children: list[Node] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "label": self.label, "seq": self.seq,
                "at": self.at, "children": [c.to_dict() for c in self.children]}


def _step_label(step: Step) -> str:
    i = step.input
    if isinstance(i, inp.NodeResultReported):
        return f"NodeResultReported {i.node_id} attempt {i.attempt}: {i.status}"
    if isinstance(i, inp.TimerFired):
        return f"TimerFired {i.timer_id}"
    if isinstance(i, inp.RetryNodeRequested):
        return f"RetryNodeRequested {i.node_id} (operator command)"
    if isinstance(i, inp.CancelRequested):
        return f"CancelRequested (operator command) reason: {i.reason!r}"
    if isinstance(i, inp.ResumeRequested):
        return "ResumeRequested (operator command)"
    if isinstance(i, inp.TriggerReceived):
        return f"TriggerReceived {i.workflow_id} v{i.workflow_version} from {i.source}"
    return _LABELS.get(step.kind, step.kind)


def _event_label(e: ev.ExecutionEvent) -> str:
    parts = [e.event_type]
    for name in ("node_id", "attempt", "timer_id", "branch", "index", "incident_id",
                 "resolution", "reason"):
        value = getattr(e, name, None)
        if value is not None and value != "":
            parts.append(f"{name}={value}")
    return " ".join(parts)


class Graph:
    """The causal links of one execution (children: execution ids by task key)."""

    def __init__(self, events: Events, children: Mapping[str, str] | None = None) -> None:
        self.events = list(events)
        self.steps = recorded_steps(events)
        self.children = dict(children or {})
        self.step_of_event: dict[str, Step] = {}
        for step in self.steps:
            for e in step.events:
                self.step_of_event[e.event_id] = step
        # event id -> the steps it led to; step cause -> the event that led to it
        self.caused: dict[str, list[Step]] = {}
        self.parent: dict[str | None, ev.ExecutionEvent] = {}
        self._link()

    def _link(self) -> None:
        scheduled: dict[tuple[str, int], ev.ExecutionEvent] = {}
        timers: dict[str, ev.ExecutionEvent] = {}
        incidents: dict[str, ev.ExecutionEvent] = {}
        waiting: dict[str, ev.ExecutionEvent] = {}
        for step in self.steps:
            origin = self._origin(step, scheduled, timers, incidents, waiting)
            if origin is not None:
                self.caused.setdefault(origin.event_id, []).append(step)
                self.parent[step.cause] = origin
            for e in step.events:
                if isinstance(e, ev.NodeScheduled):
                    scheduled[(e.node_id, e.attempt)] = e
                elif isinstance(e, ev.TimerSet):
                    timers[e.timer_id] = e
                elif isinstance(e, ev.IncidentRaised):
                    incidents[e.incident_id] = e
                elif isinstance(e, ev.NodeStarted) and (e.node_id, e.attempt) not in scheduled:
                    waiting[e.node_id] = e

    @staticmethod
    def _origin(step: Step, scheduled: dict[tuple[str, int], ev.ExecutionEvent],
                timers: dict[str, ev.ExecutionEvent], incidents: dict[str, ev.ExecutionEvent],
                waiting: dict[str, ev.ExecutionEvent]) -> ev.ExecutionEvent | None:
        i = step.input
        if isinstance(i, inp.NodeResultReported):
            return scheduled.get((i.node_id, i.attempt))
        if isinstance(i, inp.TimerFired):
            return timers.get(i.timer_id)
        if isinstance(i, inp.RetryNodeRequested | inp.ResumeRequested):
            # the command answers the newest incident (of its node, for a retry)
            for e in reversed(list(incidents.values())):
                if isinstance(i, inp.ResumeRequested) or getattr(e, "node_id", None) == i.node_id:
                    return e
        if step.kind == "event":
            for e in step.events:
                node_id = getattr(e, "node_id", None)
                if isinstance(e, ev.LoopIterationCompleted):
                    node_id = f"{e.node_id}[{e.index}]"
                if node_id in waiting:
                    return waiting[node_id]
        return None

    # --- trees ------------------------------------------------------------------------
    def _step_node(self, step: Step, depth: int) -> Node:
        node = Node("input", step.cause or "", _step_label(step), step.first_seq,
                    step.at.isoformat())
        for e in step.events:
            node.children.append(self._event_node(e, depth + 1))
        return node

    def _event_node(self, e: ev.ExecutionEvent, depth: int) -> Node:
        node = Node("event", e.event_id, _event_label(e), e.seq, e.occurred_at.isoformat())
        if depth > 200:  # a pathological chain; the tree stays printable
            return node
        for step in self.caused.get(e.event_id, ()):
            node.children.append(self._step_node(step, depth + 1))
        if isinstance(e, ev.NodeScheduled) and e.task_key in self.children:
            child = self.children[e.task_key]
            node.children.append(Node("execution", child, f"child execution {child}"))
        return node

    def forward(self, item_id: str | None = None) -> Node:
        """What `item_id` (an event id or an input id) caused; default: the whole execution
        from its trigger, with inputs nothing in the log led to (operator commands, outside
        events) as further roots."""
        if item_id is None:
            first = self.events[0]
            root = Node("execution", first.execution_id,
                        f"execution {first.execution_id} ({first.workflow_id} "
                        f"v{first.workflow_version})")
            for step in self.steps:
                if step.cause not in self.parent:
                    root.children.append(self._step_node(step, 0))
            return root
        for step in self.steps:
            if step.cause == item_id:
                return self._step_node(step, 0)
        step = self.step_of_event[item_id]
        e = next(x for x in step.events if x.event_id == item_id)
        return self._event_node(e, 0)

    def backward(self, item_id: str, parent_execution: str | None = None) -> Node:
        """What caused `item_id`: the chain from the execution's start down to it."""
        chain: list[Node] = []
        step = next((s for s in self.steps if s.cause == item_id), None)
        if step is None:
            step = self.step_of_event[item_id]
            e = next(x for x in step.events if x.event_id == item_id)
            chain.append(Node("event", e.event_id, _event_label(e), e.seq,
                              e.occurred_at.isoformat()))
        while step is not None:
            chain.append(Node("input", step.cause or "", _step_label(step), step.first_seq,
                              step.at.isoformat()))
            origin = self.parent.get(step.cause)
            if origin is None:
                break
            chain.append(Node("event", origin.event_id, _event_label(origin), origin.seq,
                              origin.occurred_at.isoformat()))
            step = self.step_of_event[origin.event_id]
        if parent_execution is not None:
            chain.append(Node("execution", parent_execution,
                              f"parent execution {parent_execution} (its subworkflow node)"))
        root = chain[-1]
        node = root
        for item in reversed(chain[:-1]):
            node.children.append(item)
            node = item
        return root

    def contains(self, item_id: str) -> bool:
        return item_id in self.step_of_event or any(s.cause == item_id for s in self.steps)


def parent_of(events: Events) -> str | None:
    """The parent execution of a child (its dedup key is the parent's task key)."""
    first = events[0] if events else None
    key = getattr(first, "dedup_key", None)
    if not key or key.count(":") < 2:
        return None
    return str(key.rsplit(":", 2)[0])
