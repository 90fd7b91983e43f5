"""What the publisher keeps of each unfinished execution, folded from execution-events
records, and the dead letters those records make. Pure: no I/O (config rendering is a
function passed in).

Per unfinished execution: the envelope, the last `NodeScheduled` of each node (the task's
input, type and key), loop items, and per node the open incident and how often the node
was dead-lettered under it (its rung: 0 the first time, 1 after one failed retry...). A
node's count ends when it succeeds or its incident is resolved; a finished execution is
dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from flowlog.streams.deadletters.message import BODY_VERSION, DeadLetter, message_id_for

#: render(workflow_id, version, node_id, node_input, item, execution_id) -> config or None
Render = Callable[[str, int, str, Any, Any, str], Any]
_FINISHED = frozenset({"ExecutionSucceeded", "ExecutionFailed", "ExecutionCancelled",
                       "ExecutionRejected"})


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str) else value


@dataclass(slots=True)
class _Task:
    node_type: str
    attempt: int
    task_key: str
    input: Any


@dataclass(slots=True)
class _Exec:
    workflow_id: str = ""
    workflow_version: int = 0
    tenant: str = "default"
    correlation_id: str | None = None
    seq: int = 0
    tasks: dict[str, _Task] = field(default_factory=dict)
    items: dict[str, Any] = field(default_factory=dict)
    incidents: dict[str, str] = field(default_factory=dict)  # node_id -> incident id
    dead: dict[str, int] = field(default_factory=dict)  # node_id -> dead-letterings


@dataclass
class PartitionFold:
    """The fold of one execution-events partition."""

    render: Render | None = None
    execs: dict[str, _Exec] = field(default_factory=dict)

    def apply(self, events: list[dict[str, Any]], emit: bool) -> list[DeadLetter]:
        """Fold one decoded batch record's events; the dead letters they make (when
        ``emit``: records before the committed offset were published already)."""
        pending: list[tuple[_Exec, dict[str, Any]]] = []
        for r in events:
            x = self._event(r)
            if x is not None and emit and r["event_type"] == "NodeDeadLettered":
                pending.append((x, r))
        # built after the whole record: the IncidentRaised comes after NodeDeadLettered
        return [self._letter(x, r) for x, r in pending]

    def _event(self, r: dict[str, Any]) -> _Exec | None:
        execution_id, name = r["execution_id"], r["event_type"]
        x = self.execs.get(execution_id)
        if x is None:
            if name not in ("ExecutionStarted", "ExecutionQueued") or r["seq"] != 1:
                return None  # a finished execution's late event, or one we never saw start
            x = self.execs[execution_id] = _Exec()
        if r["seq"] <= x.seq:
            return None  # a re-written event already applied
        x.seq = r["seq"]
        if name in ("ExecutionStarted", "ExecutionQueued"):
            x.workflow_id, x.workflow_version = r["workflow_id"], r["workflow_version"]
            x.tenant, x.correlation_id = r["tenant"], r["correlation_id"]
        elif name == "NodeScheduled":
            x.tasks[r["node_id"]] = _Task(r["node_type"], r["attempt"], r["task_key"],
                                          r["input"])
        elif name == "NodeDeadLettered":
            x.dead[r["node_id"]] = x.dead.get(r["node_id"], 0) + 1
        elif name == "IncidentRaised":
            x.incidents[r["node_id"]] = r["incident_id"]
        elif name == "IncidentResolved":
            x.incidents.pop(r["node_id"], None)
            x.dead.pop(r["node_id"], None)
        elif name == "NodeSucceeded":
            x.tasks.pop(r["node_id"], None)
            x.dead.pop(r["node_id"], None)
        elif name == "LoopIterationStarted":
            x.items[f"{r['node_id']}[{r['index']}]"] = r["item"]
        elif name == "LoopIterationCompleted":
            iter_id = f"{r['node_id']}[{r['index']}]"
            x.items.pop(iter_id, None)
            x.tasks.pop(iter_id, None)
        elif name in _FINISHED:
            self.execs.pop(execution_id, None)
        return x

    def _letter(self, x: _Exec, r: dict[str, Any]) -> DeadLetter:
        node_id = r["node_id"]
        task = x.tasks.get(node_id)
        node_input = _json(task.input) if task is not None else None
        config = None
        if self.render is not None and task is not None:
            item = x.items.get(node_id)
            config = self.render(x.workflow_id, x.workflow_version, node_id, node_input,
                                 _json(item) if item is not None else None, r["execution_id"])
        occurred: datetime = r["occurred_at"]
        # built from a record the codec decoded against the schema: no second validation
        # (it was a third of the publisher's own time per dead letter)
        return DeadLetter.model_construct(
            v=BODY_VERSION,
            message_id=message_id_for(r["event_id"]), dead_letter_event_id=r["event_id"],
            execution_id=r["execution_id"], workflow_id=r["workflow_id"],
            workflow_version=r["workflow_version"], tenant=r["tenant"],
            correlation_id=r["correlation_id"], node_id=node_id,
            node_type=task.node_type if task is not None else "",
            attempt=r["attempt"], task_key=task.task_key if task is not None else "",
            error=dict(r["error"] or {}), input=node_input, config=config,
            incident_id=x.incidents.get(node_id),
            rung=max(0, x.dead.get(node_id, 1) - 1), dead_lettered_at=occurred)
