"""The orchestrator's inputs (docs/events.md "Inputs"), as the domain sees them.

The streams layer decodes the Avro records and builds these (`flowlog.aggregates.records`); the
domain imports nothing of `flowlog.schemas` but its ids. Every input has an `event_id`:
the aggregate remembers the ids it has applied (causation ids), so a redelivered input
yields no events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Input:
    event_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerReceived(Input):
    """Starts an execution of `workflow_id` at the pinned `workflow_version`."""

    execution_id: str
    workflow_id: str
    workflow_version: int
    source: str = "manual"
    input: dict[str, Any] = field(default_factory=dict)
    dedup_key: str | None = None
    correlation_id: str | None = None
    tenant: str = "default"


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeResultReported(Input):
    """An executor's report for one node attempt: `started`, `succeeded` or `failed`."""

    node_id: str
    attempt: int
    status: str
    output: Any = None
    error: dict[str, Any] | None = None
    task_key: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    model_calls: tuple[dict[str, Any], ...] = ()
    tool_calls: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired(Input):
    timer_id: str
    kind: str
    node_id: str | None = None
    attempt: int | None = None
    due_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelRequested(Input):
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryNodeRequested(Input):
    """Retry a dead-lettered node (by hand or from the dead-letter bridge)."""

    node_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeRequested(Input):
    """Resolve open incidents by continuing past the dead-lettered nodes (output null)."""

    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class EventReceived(Input):
    """An outside event for `wait` nodes waiting on `event_name` (optionally one node)."""

    event_name: str
    payload: Any = None
    node_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionAdmitted(Input):
    """Flow control freed a slot for a queued execution: start it."""


INPUT_TYPES: dict[str, type[Input]] = {
    cls.__name__: cls
    for cls in (
        TriggerReceived, NodeResultReported, TimerFired, CancelRequested,
        RetryNodeRequested, ResumeRequested, EventReceived, ExecutionAdmitted,
    )
}  # fmt: skip
