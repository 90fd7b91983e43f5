"""Test helpers: drive an execution with scripted inputs, at a scripted time."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flowlog.aggregates.definition import compile_definition, load_definition
from flowlog.aggregates.definition.compiled import CompiledDefinition
from flowlog.aggregates.execution import ExecutionState, decide, evolve
from flowlog.aggregates.execution import inputs as I
from flowlog.aggregates.execution.events import ExecutionEvent

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
HISTORIES = REPO / "tests" / "fixtures" / "histories"
T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


def example(name: str) -> CompiledDefinition:
    return compile_definition(load_definition(EXAMPLES / f"{name}.yaml"))


class Run:
    """One execution driven input by input; keeps every input and event."""

    def __init__(self, definition: CompiledDefinition, execution_id: str = "exec-1") -> None:
        self.d = definition
        self.execution_id = execution_id
        self.state = ExecutionState()
        self.events: list[ExecutionEvent] = []
        self.inputs: list[tuple[datetime, I.Input]] = []
        self.now = T0
        self._n = 0

    def send(self, inp: I.Input) -> list[ExecutionEvent]:
        evs = decide(self.state, inp, self.now, self.d)
        for e in evs:
            evolve(self.state, e)
        self.events.extend(evs)
        self.inputs.append((self.now, inp))
        return evs

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self._n}"

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def trigger(self, payload: dict[str, Any], source: str = "manual") -> list[ExecutionEvent]:
        return self.send(I.TriggerReceived(
            event_id=self._id("trigger"), execution_id=self.execution_id,
            workflow_id=self.d.workflow_id, workflow_version=self.d.version,
            source=source, input=payload,
        ))  # fmt: skip

    def attempt(self, node_id: str) -> int:
        return self.state.nodes[node_id].attempt

    def ok(self, node_id: str, output: Any = None, **extra: Any) -> list[ExecutionEvent]:
        return self.send(I.NodeResultReported(
            event_id=self._id("result"), node_id=node_id, attempt=self.attempt(node_id),
            status="succeeded", output=output, **extra,
        ))  # fmt: skip

    def fail(self, node_id: str, message: str = "boom", retryable: bool = True) -> list[Any]:
        return self.send(I.NodeResultReported(
            event_id=self._id("result"), node_id=node_id, attempt=self.attempt(node_id),
            status="failed", error={"type": "TaskError", "message": message,
                                    "retryable": retryable},
        ))  # fmt: skip

    def fire(self, kind: str, node_id: str | None = None) -> list[ExecutionEvent]:
        for timer_id, (k, n, attempt, due) in sorted(self.state.timers.items()):
            current = self.state.nodes[n].attempt if n in self.state.nodes else None
            if k == kind and n == node_id and attempt == current:
                self.now = max(self.now, datetime.fromisoformat(due))
                return self.send(I.TimerFired(event_id=self._id("timer"), timer_id=timer_id,
                                              kind=kind, node_id=n, attempt=attempt))  # fmt: skip
        raise AssertionError(f"no {kind} timer for {node_id}: {self.state.timers}")

    def types(self, evs: list[ExecutionEvent] | None = None) -> list[str]:
        return [e.event_type for e in (self.events if evs is None else evs)]

    def scheduled(self) -> list[str]:
        return sorted(n for n, r in self.state.nodes.items() if r.status == "scheduled")


# --- input (de)serialization for recorded histories ----------------------------------
_DT_FIELDS = {"started_at", "finished_at", "due_at"}


def input_to_dict(at: datetime, inp: I.Input) -> dict[str, Any]:
    body = {}
    for f in fields(inp):
        value = getattr(inp, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        body[f.name] = value
    return {"at": at.isoformat(), "type": type(inp).__name__, "fields": body}


def input_from_dict(data: dict[str, Any]) -> tuple[datetime, I.Input]:
    cls = I.INPUT_TYPES[data["type"]]
    body = dict(data["fields"])
    for key in _DT_FIELDS & body.keys():
        if body[key] is not None:
            body[key] = datetime.fromisoformat(body[key])
    for key in ("model_calls", "tool_calls"):
        if key in body:
            body[key] = tuple(body[key])
    return datetime.fromisoformat(data["at"]), cls(**body)


def canonical(value: Any) -> Any:
    """JSON round trip with sorted keys, so dict order never matters."""
    return json.loads(json.dumps(value, sort_keys=True))
