"""Named types and event families shared by the event modules (see events.py)."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from flowlog.schemas.domainform import EVENT_FORM, DomainForm
from flowlog.schemas.errors import EventValidationError
from flowlog.schemas.model import Event, Long, Record
from pydantic import AwareDatetime, model_validator

# --- shared named types -------------------------------------------------------------------


class TriggerSource(StrEnum):
    webhook = "webhook"
    schedule = "schedule"
    event = "event"
    poll = "poll"
    manual = "manual"


class TimerKind(StrEnum):
    delay = "delay"
    retry = "retry"
    node_timeout = "node_timeout"
    execution_timeout = "execution_timeout"


class ResultStatus(StrEnum):
    succeeded = "succeeded"
    failed = "failed"
    started = "started"  # an attempt began (optional report; the aggregate records NodeStarted)


class ErrorInfo(Record):
    type: str
    message: str
    retryable: bool = False
    #: not before this time is a retry worth it (an open circuit breaker's half-open time);
    #: such a failure did not reach the target and uses up no attempt
    retry_at: AwareDatetime | None = None


class ModelCall(Record):
    provider: str
    model: str
    input_tokens: Long
    output_tokens: Long
    cost_usd: float
    latency_ms: Long


class ToolCall(Record):
    tool: str
    ok: bool
    latency_ms: Long


# --- families -------------------------------------------------------------------------------


class ExecutionEvent(Event):
    """An event of the execution's own history (topic execution-events): ``seq`` is set."""

    topic: ClassVar[str] = "execution-events"
    domain_forms: ClassVar[tuple[DomainForm, ...]] = (EVENT_FORM,)

    @model_validator(mode="after")
    def _needs_seq(self) -> ExecutionEvent:
        if self.seq is None or self.seq < 1:
            raise EventValidationError(
                self.event_type, "seq", self.seq, "must be a position >= 1",
                "set seq to the event's position in the execution's history",
            )
        return self


class DefinitionEvent(Event):
    """A workflow definition event (topic workflow-definitions, key workflow_id)."""

    topic: ClassVar[str] = "workflow-definitions"
    key_field: ClassVar[str] = "workflow_id"
    execution_id: str | None = None
