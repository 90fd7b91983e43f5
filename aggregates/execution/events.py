"""Execution events: the names and fields of docs/events.md, one frozen dataclass each.

Every event carries the envelope (`event_id`, `seq`, `occurred_at`, `execution_id`,
`workflow_id`, `workflow_version`, `correlation_id`, `causation_id`, `tenant`); the
streams layer maps each 1:1 onto its Avro type. JSON-valued fields hold plain JSON values.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, ClassVar

JSON = Any


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionEvent:
    event_type: ClassVar[str] = "ExecutionEvent"

    event_id: str
    seq: int
    occurred_at: datetime
    execution_id: str
    workflow_id: str
    workflow_version: int
    correlation_id: str | None
    causation_id: str | None
    tenant: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionStarted(ExecutionEvent):
    event_type: ClassVar[str] = "ExecutionStarted"
    input: JSON
    trigger_source: str
    dedup_key: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionQueued(ExecutionEvent):
    """Accepted, but waiting for a free slot (flow control); `ExecutionAdmitted` starts it."""

    event_type: ClassVar[str] = "ExecutionQueued"
    input: JSON
    trigger_source: str
    dedup_key: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionRejected(ExecutionEvent):
    event_type: ClassVar[str] = "ExecutionRejected"
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeScheduled(ExecutionEvent):
    event_type: ClassVar[str] = "NodeScheduled"
    node_id: str
    node_type: str
    attempt: int
    input: JSON
    task_key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStarted(ExecutionEvent):
    event_type: ClassVar[str] = "NodeStarted"
    node_id: str
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSucceeded(ExecutionEvent):
    event_type: ClassVar[str] = "NodeSucceeded"
    node_id: str
    attempt: int
    output: JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeFailed(ExecutionEvent):
    event_type: ClassVar[str] = "NodeFailed"
    node_id: str
    attempt: int
    error: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRetryScheduled(ExecutionEvent):
    event_type: ClassVar[str] = "NodeRetryScheduled"
    node_id: str
    attempt: int
    next_attempt: int
    due_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeDeadLettered(ExecutionEvent):
    event_type: ClassVar[str] = "NodeDeadLettered"
    node_id: str
    attempt: int
    error: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSkipped(ExecutionEvent):
    event_type: ClassVar[str] = "NodeSkipped"
    node_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BranchDecided(ExecutionEvent):
    event_type: ClassVar[str] = "BranchDecided"
    node_id: str
    branch: str
    targets: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopIterationStarted(ExecutionEvent):
    event_type: ClassVar[str] = "LoopIterationStarted"
    node_id: str
    index: int
    item: JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopIterationCompleted(ExecutionEvent):
    event_type: ClassVar[str] = "LoopIterationCompleted"
    node_id: str
    index: int
    output: JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerSet(ExecutionEvent):
    event_type: ClassVar[str] = "TimerSet"
    timer_id: str
    kind: str
    node_id: str | None
    attempt: int | None
    due_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired(ExecutionEvent):
    event_type: ClassVar[str] = "TimerFired"
    timer_id: str
    kind: str
    node_id: str | None
    attempt: int | None
    due_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentModelCalled(ExecutionEvent):
    event_type: ClassVar[str] = "AgentModelCalled"
    node_id: str
    attempt: int
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentToolCalled(ExecutionEvent):
    event_type: ClassVar[str] = "AgentToolCalled"
    node_id: str
    attempt: int
    tool: str
    ok: bool
    latency_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InputIgnored(ExecutionEvent):
    event_type: ClassVar[str] = "InputIgnored"
    input_event_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentRaised(ExecutionEvent):
    event_type: ClassVar[str] = "IncidentRaised"
    incident_id: str
    node_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentResolved(ExecutionEvent):
    event_type: ClassVar[str] = "IncidentResolved"
    incident_id: str
    node_id: str
    resolution: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionSucceeded(ExecutionEvent):
    event_type: ClassVar[str] = "ExecutionSucceeded"
    output: JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionFailed(ExecutionEvent):
    event_type: ClassVar[str] = "ExecutionFailed"
    error: dict[str, Any]
    node_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionCancelled(ExecutionEvent):
    event_type: ClassVar[str] = "ExecutionCancelled"
    reason: str


EVENT_TYPES: dict[str, type[ExecutionEvent]] = {
    cls.event_type: cls
    for cls in (
        ExecutionStarted, ExecutionQueued, ExecutionRejected, NodeScheduled, NodeStarted,
        NodeSucceeded,
        NodeFailed, NodeRetryScheduled, NodeDeadLettered, NodeSkipped, BranchDecided,
        LoopIterationStarted, LoopIterationCompleted, TimerSet, TimerFired, AgentModelCalled,
        AgentToolCalled, InputIgnored, IncidentRaised, IncidentResolved, ExecutionSucceeded,
        ExecutionFailed, ExecutionCancelled,
    )
}  # fmt: skip
_DATETIME_FIELDS = {"occurred_at", "due_at"}
_FIELD_NAMES: dict[type[ExecutionEvent], tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in EVENT_TYPES.values()
}


def event_to_dict(event: ExecutionEvent) -> dict[str, Any]:
    """A JSON-able dict with `event_type`; datetimes as ISO 8601 strings."""
    out: dict[str, Any] = {"event_type": event.event_type}
    for name in _FIELD_NAMES[type(event)]:
        value = getattr(event, name)
        out[name] = value.isoformat() if name in _DATETIME_FIELDS else value
    return out


def event_from_dict(data: dict[str, Any]) -> ExecutionEvent:
    """The inverse of `event_to_dict`; raises KeyError for an unknown event_type."""
    cls = EVENT_TYPES[data["event_type"]]
    kwargs: dict[str, Any] = {}
    for name in _FIELD_NAMES[cls]:
        value = data.get(name)
        if name in _DATETIME_FIELDS and isinstance(value, str):
            value = datetime.fromisoformat(value)
        kwargs[name] = value
    return cls(**kwargs)
