"""Every event type of the contract (docs/events.md), as pydantic models.

Each class is the one declaration of its event type: it matches its newest
``avro/<Name>/vN.avsc`` exactly, and the domain's dataclasses
(``aggregates/execution/_generated_*.py``) are generated from it and its ``domain_forms``
(``domaingen.py``); ``flowlog schemas check`` and tests/unit/schemas prove both. Change a
class, then run ``flowlog schemas generate`` to write the next schema version and the
domain modules.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from flowlog.schemas.domainform import (
    EVENT_FORM,
    DomainField,
    DomainForm,
    input_form,
)
from flowlog.schemas.errors import EventValidationError
from flowlog.schemas.execution_events import (
    AgentModelCalled,
    AgentToolCalled,
    BranchDecided,
    ExecutionCancelled,
    ExecutionFailed,
    ExecutionQueued,
    ExecutionRejected,
    ExecutionStarted,
    ExecutionSucceeded,
    IncidentRaised,
    IncidentResolved,
    InputIgnored,
    LoopIterationCompleted,
    LoopIterationStarted,
    NodeDeadLettered,
    NodeFailed,
    NodeRetryScheduled,
    NodeScheduled,
    NodeSkipped,
    NodeStarted,
    NodeSucceeded,
    TimerSet,
)
from flowlog.schemas.ids import execution_id_for
from flowlog.schemas.model import Event, Int32, Json, Long, Record, validation_error
from flowlog.schemas.shared import (
    DefinitionEvent,
    ErrorInfo,
    ExecutionEvent,
    ModelCall,
    ResultStatus,
    TimerKind,
    ToolCall,
    TriggerSource,
)
from pydantic import AwareDatetime, Field, ValidationError, model_validator

# --- inputs to the orchestrator -------------------------------------------------------------


class TriggerReceived(Event):
    """A trigger; without ``execution_id`` one is derived (dedup key) or made (UUIDv7)."""

    topic: ClassVar[str] = "triggers"
    derived_fields: ClassVar[tuple[str, ...]] = ("execution_id",)
    #: the state knows nothing yet: a trigger carries what starts one
    domain_forms: ClassVar[tuple[DomainForm, ...]] = (input_form(
        order=("event_id", "execution_id", "workflow_id", "workflow_version", "source",
               "input", "dedup_key", "correlation_id", "tenant"),
        source=DomainField(default="manual"),
        input=DomainField(type="dict[str, Any]", factory="dict"),
        doc="Starts an execution of `workflow_id` at the pinned `workflow_version`."),)
    event_type: Literal["TriggerReceived"] = "TriggerReceived"
    source: TriggerSource
    input: Json
    dedup_key: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _derive_ids(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("workflow_id"), str):
            return data
        dedup = data.get("dedup_key")
        derived = execution_id_for(data["workflow_id"], dedup) if dedup is not None else None
        given = data.get("execution_id")
        if given is None:
            data = {**data, "execution_id": derived or execution_id_for(data["workflow_id"], None)}
        elif derived is not None and given != derived:
            raise EventValidationError(
                "TriggerReceived", "execution_id", given,
                "does not match the id derived from dedup_key",
                f"leave execution_id out (it is derived) or use {derived}",
            )
        return data

    @model_validator(mode="after")
    def _correlate(self) -> TriggerReceived:
        if self.correlation_id is None:
            object.__setattr__(self, "correlation_id", self.event_id)
        return self


class CancelRequested(Event):
    topic: ClassVar[str] = "commands"
    #: who asked is audit data (the audit tools read it from the record): no decision uses it
    domain_forms: ClassVar[tuple[DomainForm, ...]] = (input_form(omit=("requested_by",)),)
    event_type: Literal["CancelRequested"] = "CancelRequested"
    reason: str = ""
    requested_by: str | None = Field(
        None, description="who asked (an operator's user name, or a process like deadletters)")


class RetryNodeRequested(Event):
    topic: ClassVar[str] = "commands"
    #: who asked is audit data (the audit tools read it from the record): no decision uses it
    domain_forms: ClassVar[tuple[DomainForm, ...]] = (input_form(
        omit=("requested_by",),
        doc="Retry a dead-lettered node (by hand or from the dead-letter bridge)."),)
    event_type: Literal["RetryNodeRequested"] = "RetryNodeRequested"
    node_id: str
    reason: str = ""
    requested_by: str | None = Field(
        None, description="who asked (an operator's user name, or a process like deadletters)")


class ResumeRequested(Event):
    topic: ClassVar[str] = "commands"
    #: who asked is audit data (the audit tools read it from the record): no decision uses it
    domain_forms: ClassVar[tuple[DomainForm, ...]] = (input_form(
        omit=("requested_by",),
        doc="Resolve open incidents by continuing past the dead-lettered nodes (output null)."),)
    event_type: Literal["ResumeRequested"] = "ResumeRequested"
    reason: str = ""
    requested_by: str | None = Field(
        None, description="who asked (an operator's user name, or a process like deadletters)")


class EventReceived(Event):
    """An outside event for ``wait`` nodes waiting on ``event_name`` (optionally one node)."""

    topic: ClassVar[str] = "commands"
    domain_forms: ClassVar[tuple[DomainForm, ...]] = (input_form(),)
    event_type: Literal["EventReceived"] = "EventReceived"
    event_name: str
    payload: Json | None = None
    node_id: str | None = None


class ExecutionAdmitted(Event):
    """Flow control freed a slot: start the queued execution (written by the timers role)."""

    topic: ClassVar[str] = "commands"
    domain_forms: ClassVar[tuple[DomainForm, ...]] = (input_form(
        doc="Flow control freed a slot for a queued execution: start it."),)
    event_type: Literal["ExecutionAdmitted"] = "ExecutionAdmitted"


class NodeResultReported(Event):
    topic: ClassVar[str] = "node-results"
    #: the domain accepts a result without task key and times (domain tests, recorded
    #: histories); the wire always carries them
    domain_forms: ClassVar[tuple[DomainForm, ...]] = (input_form(
        order=("event_id", "node_id", "attempt", "status", "output", "error", "task_key",
               "started_at", "finished_at", "model_calls", "tool_calls"),
        task_key=DomainField(default=""),
        started_at=DomainField(type="datetime | None", default=None),
        finished_at=DomainField(type="datetime | None", default=None),
        doc="An executor's report for one node attempt: `started`, `succeeded` or `failed`."),)
    event_type: Literal["NodeResultReported"] = "NodeResultReported"
    node_id: str
    attempt: Int32
    task_key: str
    status: ResultStatus
    output: Json | None = None
    error: ErrorInfo | None = None
    started_at: AwareDatetime
    finished_at: AwareDatetime
    model_calls: list[ModelCall] = Field(default_factory=list)
    tool_calls: list[ToolCall] = Field(default_factory=list)


class NodeTaskIssued(Event):
    topic: ClassVar[str] = "node-tasks"
    event_type: Literal["NodeTaskIssued"] = "NodeTaskIssued"
    node_id: str
    node_type: str
    attempt: Int32
    task_key: str
    input: Json
    config: Json
    timeout_ms: Long
    deadline_at: AwareDatetime


class TimerFired(Event):
    """A due timer: an input on ``timers`` and, with ``seq``, an execution event."""

    topic: ClassVar[str] = "timers"
    #: an execution event (with seq) and an input; as an input the domain accepts it without
    #: due_at (domain tests), the wire always carries it
    domain_forms: ClassVar[tuple[DomainForm, ...]] = (
        EVENT_FORM, input_form(due_at=DomainField(type="datetime | None", default=None)))
    event_type: Literal["TimerFired"] = "TimerFired"
    timer_id: str
    kind: TimerKind
    node_id: str | None = None
    attempt: Int32 | None = None
    due_at: AwareDatetime


# --- definition events ----------------------------------------------------------------------


class _VersionMatches(DefinitionEvent):
    @model_validator(mode="after")
    def _same_version(self) -> _VersionMatches:
        version = getattr(self, "version", self.workflow_version)
        if version != self.workflow_version:
            raise EventValidationError(
                self.event_type, "version", version, "differs from workflow_version",
                "give the same number in version and workflow_version",
            )
        return self


class WorkflowDefined(_VersionMatches):
    event_type: Literal["WorkflowDefined"] = "WorkflowDefined"
    definition: Json
    version: Int32


class WorkflowUpdated(_VersionMatches):
    event_type: Literal["WorkflowUpdated"] = "WorkflowUpdated"
    definition: Json
    version: Int32


class WorkflowActivated(DefinitionEvent):
    event_type: Literal["WorkflowActivated"] = "WorkflowActivated"


class WorkflowPaused(DefinitionEvent):
    event_type: Literal["WorkflowPaused"] = "WorkflowPaused"
    reason: str = ""


class WorkflowArchived(DefinitionEvent):
    event_type: Literal["WorkflowArchived"] = "WorkflowArchived"


# --- quarantine -----------------------------------------------------------------------------


class EventQuarantined(Event):
    """An undecodable or invalid record, kept with why and where it came from.

    The envelope's execution fields are null: the bad record's content is not trusted.
    """

    topic: ClassVar[str] = "quarantine"
    key_field: ClassVar[str] = "event_id"
    event_type: Literal["EventQuarantined"] = "EventQuarantined"
    execution_id: str | None = None
    workflow_id: str | None = None
    workflow_version: Int32 | None = None
    reason: str
    error_type: str
    source_topic: str
    source_partition: Int32
    source_offset: Long
    raw: bytes
    headers: dict[str, str] = Field(default_factory=dict, description="values base64")
    quarantined_at: AwareDatetime


# --- the catalog ----------------------------------------------------------------------------

INPUT_TYPES: tuple[type[Event], ...] = (
    TriggerReceived, CancelRequested, RetryNodeRequested, ResumeRequested,
    EventReceived, ExecutionAdmitted, NodeResultReported, TimerFired, NodeTaskIssued,
)
EXECUTION_TYPES: tuple[type[Event], ...] = (
    ExecutionStarted, ExecutionRejected, NodeScheduled, NodeStarted, NodeSucceeded,
    NodeFailed, NodeRetryScheduled, NodeDeadLettered, NodeSkipped, BranchDecided,
    LoopIterationStarted, LoopIterationCompleted, TimerSet, TimerFired, AgentModelCalled,
    AgentToolCalled, InputIgnored, IncidentRaised, IncidentResolved, ExecutionSucceeded,
    ExecutionFailed, ExecutionCancelled, ExecutionQueued,
)
DEFINITION_TYPES: tuple[type[Event], ...] = (
    WorkflowDefined, WorkflowUpdated, WorkflowActivated, WorkflowPaused, WorkflowArchived,
)
EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (*INPUT_TYPES, *EXECUTION_TYPES, *DEFINITION_TYPES, EventQuarantined)
}

ExecutionEventUnion = Annotated[
    ExecutionStarted | ExecutionRejected | NodeScheduled | NodeStarted | NodeSucceeded
    | NodeFailed | NodeRetryScheduled | NodeDeadLettered | NodeSkipped | BranchDecided
    | LoopIterationStarted | LoopIterationCompleted | TimerSet | TimerFired
    | AgentModelCalled | AgentToolCalled | InputIgnored | IncidentRaised | IncidentResolved
    | ExecutionSucceeded | ExecutionFailed | ExecutionCancelled | ExecutionQueued,
    Field(discriminator="event_type"),
]


def parse_event(data: dict[str, Any]) -> Event:
    """Validate a dict (JSON-shaped, e.g. from `flowlog publish`) into its event type."""
    name = data.get("event_type")
    cls = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise EventValidationError(
            str(name), "event_type", name, "names no event type",
            f"use one of: {', '.join(sorted(EVENT_TYPES))}",
        )
    return cls.validate_dict(data)



class ExecutionEventBatch(Record):
    """The events of one orchestrator decision, written as ONE record (all or nothing).

    ``events`` hold ``first_seq``..``last_seq`` of ``execution_id`` in order, no gaps.
    """

    execution_id: str
    first_seq: Long
    last_seq: Long
    causation_id: str | None = None
    events: list[ExecutionEventUnion]

    topic: ClassVar[str] = "execution-events"
    key_field: ClassVar[str] = "execution_id"

    @model_validator(mode="after")
    def _contiguous(self) -> ExecutionEventBatch:
        seqs = [e.seq for e in self.events]
        if seqs != list(range(self.first_seq, self.last_seq + 1)) or not seqs:
            raise EventValidationError(
                "ExecutionEventBatch", "events", seqs,
                f"must hold seq {self.first_seq}..{self.last_seq} in order, no gaps",
                "put the decision's events in seq order and set first_seq/last_seq to match",
            )
        wrong = [e.event_id for e in self.events if e.execution_id != self.execution_id]
        if wrong:
            raise EventValidationError(
                "ExecutionEventBatch", "events", wrong,
                f"hold events of another execution than {self.execution_id}",
                "batch only the events of one execution",
            )
        return self

    @property
    def key(self) -> str:
        return self.execution_id

    def to_avro(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "causation_id": self.causation_id,
            "events": [e.to_avro() for e in self.events],
        }

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> ExecutionEventBatch:
        events = [EVENT_TYPES[e["event_type"]].from_avro(e) for e in record["events"]]
        try:
            return cls.model_validate({**record, "events": events})
        except ValidationError as exc:
            raise validation_error("ExecutionEventBatch", exc, record) from exc


def to_model(name: str, record: dict[str, Any]) -> Event | ExecutionEventBatch:
    """A decoded record (``Codec.decode``) validated into its Python type."""
    if name == "ExecutionEventBatch":
        return ExecutionEventBatch.from_avro(record)
    cls = EVENT_TYPES.get(name)
    if cls is None:
        raise EventValidationError(name, "event_type", name, "names no event type",
                                   "upgrade flowlog, or send an event of docs/events.md")
    if record.get("event_type") != name:
        raise EventValidationError(name, "event_type", record.get("event_type"),
                                   f"does not match the schema {name}",
                                   f"set event_type to {name!r}")
    return cls.from_avro(record)


__all__ = [  # the public names, including those re-exported from shared/execution_events
    "EVENT_TYPES", "EXECUTION_TYPES", "INPUT_TYPES", "DEFINITION_TYPES", "DefinitionEvent",
    "ErrorInfo", "Event", "EventQuarantined", "ExecutionEvent", "ExecutionEventBatch",
    "ExecutionEventUnion", "ModelCall", "ResultStatus", "TimerKind", "ToolCall",
    "TriggerSource", "parse_event", "to_model",
    *(cls.__name__ for cls in (*INPUT_TYPES, *EXECUTION_TYPES, *DEFINITION_TYPES)),
]
