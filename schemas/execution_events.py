"""Execution events: the history the orchestrator writes to execution-events."""

from __future__ import annotations

from typing import Literal

from flowlog.schemas.model import Int32, Json, Long
from flowlog.schemas.shared import ErrorInfo, ExecutionEvent, TimerKind, TriggerSource
from pydantic import AwareDatetime


class ExecutionStarted(ExecutionEvent):
    event_type: Literal["ExecutionStarted"] = "ExecutionStarted"
    input: Json
    trigger_source: TriggerSource
    dedup_key: str | None = None


class ExecutionQueued(ExecutionEvent):
    """Accepted but waiting for a free slot (flow control); started by ExecutionAdmitted."""

    event_type: Literal["ExecutionQueued"] = "ExecutionQueued"
    input: Json
    trigger_source: TriggerSource
    dedup_key: str | None = None


class ExecutionRejected(ExecutionEvent):
    event_type: Literal["ExecutionRejected"] = "ExecutionRejected"
    reason: str


class NodeScheduled(ExecutionEvent):
    event_type: Literal["NodeScheduled"] = "NodeScheduled"
    node_id: str
    node_type: str
    attempt: Int32
    input: Json
    task_key: str


class NodeStarted(ExecutionEvent):
    event_type: Literal["NodeStarted"] = "NodeStarted"
    node_id: str
    attempt: Int32


class NodeSucceeded(ExecutionEvent):
    event_type: Literal["NodeSucceeded"] = "NodeSucceeded"
    node_id: str
    attempt: Int32
    output: Json


class NodeFailed(ExecutionEvent):
    event_type: Literal["NodeFailed"] = "NodeFailed"
    node_id: str
    attempt: Int32
    error: ErrorInfo


class NodeRetryScheduled(ExecutionEvent):
    event_type: Literal["NodeRetryScheduled"] = "NodeRetryScheduled"
    node_id: str
    attempt: Int32
    next_attempt: Int32
    due_at: AwareDatetime


class NodeDeadLettered(ExecutionEvent):
    event_type: Literal["NodeDeadLettered"] = "NodeDeadLettered"
    node_id: str
    attempt: Int32
    error: ErrorInfo


class NodeSkipped(ExecutionEvent):
    event_type: Literal["NodeSkipped"] = "NodeSkipped"
    node_id: str
    reason: str


class BranchDecided(ExecutionEvent):
    event_type: Literal["BranchDecided"] = "BranchDecided"
    node_id: str
    branch: str
    targets: list[str]


class LoopIterationStarted(ExecutionEvent):
    event_type: Literal["LoopIterationStarted"] = "LoopIterationStarted"
    node_id: str
    index: Int32
    item: Json


class LoopIterationCompleted(ExecutionEvent):
    event_type: Literal["LoopIterationCompleted"] = "LoopIterationCompleted"
    node_id: str
    index: Int32
    output: Json


class TimerSet(ExecutionEvent):
    event_type: Literal["TimerSet"] = "TimerSet"
    timer_id: str
    kind: TimerKind
    node_id: str | None = None
    attempt: Int32 | None = None
    due_at: AwareDatetime


class AgentModelCalled(ExecutionEvent):
    event_type: Literal["AgentModelCalled"] = "AgentModelCalled"
    node_id: str
    attempt: Int32
    provider: str
    model: str
    input_tokens: Long
    output_tokens: Long
    cost_usd: float
    latency_ms: Long


class AgentToolCalled(ExecutionEvent):
    event_type: Literal["AgentToolCalled"] = "AgentToolCalled"
    node_id: str
    attempt: Int32
    tool: str
    ok: bool
    latency_ms: Long


class InputIgnored(ExecutionEvent):
    event_type: Literal["InputIgnored"] = "InputIgnored"
    input_event_id: str
    reason: str


class IncidentRaised(ExecutionEvent):
    event_type: Literal["IncidentRaised"] = "IncidentRaised"
    incident_id: str
    node_id: str
    reason: str


class IncidentResolved(ExecutionEvent):
    event_type: Literal["IncidentResolved"] = "IncidentResolved"
    incident_id: str
    node_id: str
    resolution: str


class ExecutionSucceeded(ExecutionEvent):
    event_type: Literal["ExecutionSucceeded"] = "ExecutionSucceeded"
    output: Json


class ExecutionFailed(ExecutionEvent):
    event_type: Literal["ExecutionFailed"] = "ExecutionFailed"
    error: ErrorInfo
    node_id: str | None = None


class ExecutionCancelled(ExecutionEvent):
    event_type: Literal["ExecutionCancelled"] = "ExecutionCancelled"
    reason: str = ""
