"""Response shapes of the query API (they make the OpenAPI document; schemathesis checks
every answer against it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class ExecutionSummary(BaseModel):
    execution_id: str
    workflow_id: str
    workflow_version: int
    tenant: str
    status: str
    phase: str
    trigger_id: str | None
    trigger_source: str | None
    correlation_id: str | None
    failed_node: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    node_runs: int
    retries: int
    dead_letters: int
    model_calls: int
    tool_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    last_seq: int
    last_event_at: datetime


class ExecutionPage(BaseModel):
    items: list[ExecutionSummary]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page; "
                                    "null: this is the last page.")


class NodeRun(BaseModel):
    execution_id: str
    node_id: str
    attempt: int
    node_type: str | None
    status: str
    task_key: str | None
    workflow_id: str
    tenant: str
    created_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    error: Any = None
    output_summary: str | None
    model: str | None
    model_calls: int
    tool_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    last_seq: int


class NodeRunPage(BaseModel):
    items: list[NodeRun]
    next_cursor: str | None = None


class TimelineBar(BaseModel):
    """One bar of the Gantt-like timeline: a node's attempt, or a node that did not run."""

    node_id: str
    attempt: int
    node_type: str | None
    status: str
    start: datetime | None
    end: datetime | None
    duration_ms: int | None


class EventIndexRow(BaseModel):
    execution_id: str
    seq: int
    event_id: str
    event_type: str
    occurred_at: datetime
    node_id: str | None
    causation_id: str | None
    correlation_id: str | None
    kafka_topic: str
    kafka_partition: int
    kafka_offset: int


class EventPage(BaseModel):
    items: list[EventIndexRow]
    next_cursor: str | None = None


class ExecutionDetail(ExecutionSummary):
    dedup_key: str | None
    input: Any = None
    output: Any = None
    error: Any = None
    node_status: dict[str, Any]
    incidents: dict[str, Any]
    node_run_rows: list[NodeRun] = Field(description="Every node run (attempt) so far.")
    timeline: list[TimelineBar] = Field(description="Every node of the workflow version, "
                                        "one bar per attempt (nodes that never ran: one bar "
                                        "with no start).")
    outputs: dict[str, str | None] = Field(description="Each node's latest output summary.")
    events: list[EventIndexRow] = Field(description="The first events (see /events for "
                                        "all of them).")


class Workflow(BaseModel):
    workflow_id: str
    name: str | None
    status: str
    latest_version: int
    pause_reason: str | None
    created_at: datetime
    updated_at: datetime


class WorkflowPage(BaseModel):
    items: list[Workflow]
    next_cursor: str | None = None


class VersionSummary(BaseModel):
    workflow_id: str
    version: int
    name: str | None
    node_count: int
    defined_at: datetime


class WorkflowDetail(Workflow):
    versions: list[VersionSummary]


class WorkflowVersion(VersionSummary):
    definition: dict[str, Any]


class Trigger(BaseModel):
    trigger_id: str
    execution_id: str
    workflow_id: str
    workflow_version: int
    tenant: str
    source: str | None
    dedup_key: str | None
    input: Any = None
    outcome: str
    reason: str | None
    received_at: datetime


class TriggerPage(BaseModel):
    items: list[Trigger]
    next_cursor: str | None = None


class Webhook(BaseModel):
    path: str
    workflow_id: str
    workflow_version: int
    trigger_index: int
    tenant: str
    method: str
    config: dict[str, Any]
    registered_at: datetime


class Schedule(BaseModel):
    workflow_id: str
    trigger_index: int
    workflow_version: int
    tenant: str
    config: dict[str, Any]
    active: bool
    since: datetime
    cursor_at: datetime | None
    updated_at: datetime


class Slot(BaseModel):
    workflow_id: str
    trigger_index: int
    slot_at: datetime
    slot_id: str
    state: str
    reason: str
    execution_id: str | None
    workflow_version: int | None
    recorded_at: datetime


class SlotPage(BaseModel):
    items: list[Slot]
    next_cursor: str | None = None


class ExecutionBucket(BaseModel):
    bucket: datetime
    group: str | None = Field(description="The group_by value (null: no grouping).")
    executions: int
    succeeded: int
    failed: int
    finished: int
    failure_rate: float | None = Field(description="failed / finished; null: none finished.")
    throughput_per_s: float
    duration_p50_ms: float | None
    duration_p95_ms: float | None
    duration_p99_ms: float | None
    retries: int
    dead_letters: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


class NodeBucket(BaseModel):
    bucket: datetime
    group: str | None
    runs: int
    failed: int
    retries: int = Field(description="Runs that were a retry (attempt > 1).")
    duration_p50_ms: float | None
    duration_p95_ms: float | None
    model_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


class ModelBucket(BaseModel):
    bucket: datetime
    group: str | None
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_p95_ms: float | None


class _Range(BaseModel):
    start: datetime = Field(description="The range's start (inclusive).")
    end: datetime = Field(description="The range's end (exclusive).")
    bucket: str
    group_by: str | None


class ExecutionAnalytics(_Range):
    rows: list[ExecutionBucket]


class NodeAnalytics(_Range):
    rows: list[NodeBucket]


class ModelAnalytics(_Range):
    rows: list[ModelBucket]
