"""A dead letter: the failed task with its full context, the ladder it climbs down, and
the ids derived from it. Pure: no I/O, no clock.

A dead letter is made from a `NodeDeadLettered` execution event. Its ``message_id``
derives from that event's id, so a re-read event (a crash before the Kafka offset was
committed) publishes the same message again, and every consumer deduplicates on it; the
retry command's event id derives from the ``message_id``, so a redelivered message makes
the same command and the orchestrator applies it once.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson
from flowlog.aggregates.records import derived_id
from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: Version of the message body; a reader refuses others (parked with the reason).
BODY_VERSION = 1
#: Stages a dead letter is routed to (the first word of its routing key).
DELAY, DUE, PARKED = "delay", "due", "parked"
#: Headers of a message parked by the bridge because it could not be read.
H_REASON = "x-flowlog-parked-reason"
H_BY = "x-flowlog-parked-by"


class DeadLetter(BaseModel):
    """The body of a dead-letter message (JSON). Secrets stay `${secret:NAME}` references:
    ``input`` and ``config`` are what the executor was given, before it resolved them."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = Field(BODY_VERSION, description="body version")
    message_id: str
    dead_letter_event_id: str = Field(description="the NodeDeadLettered event it came from")
    execution_id: str = Field(min_length=1)
    workflow_id: str = Field(min_length=1)
    workflow_version: int
    tenant: str = "default"
    correlation_id: str | None = None
    node_id: str = Field(min_length=1)
    node_type: str = ""
    attempt: int = Field(ge=1)
    task_key: str = ""
    error: dict[str, Any] = Field(default_factory=dict)
    input: Any = None
    config: Any = None
    incident_id: str | None = None
    rung: int = Field(0, ge=0, description="0 for the first dead-lettering of the node")
    dead_lettered_at: datetime

    @property
    def error_type(self) -> str:
        return str(self.error.get("type") or "Error")

    def body(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)


class MalformedDeadLetter(ValueError):
    """A message that is not a dead letter this version can retry (parked with the reason)."""


def message_id_for(dead_letter_event_id: str) -> str:
    """The message id of the dead letter made from one `NodeDeadLettered` event."""
    return derived_id(dead_letter_event_id, "dead-letter")


def retry_event_id(message_id: str) -> str:
    """The event id of the `RetryNodeRequested` made from one dead letter (bridge or CLI)."""
    return derived_id(message_id, "retry")


def discard_event_id(message_id: str) -> str:
    """The event id of the command an operator's discard of one dead letter sends."""
    return derived_id(message_id, "discard")


def parse(body: bytes, message_id: str | None = None) -> DeadLetter:
    """The dead letter in a message body; `MalformedDeadLetter` says what is wrong."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedDeadLetter(f"the body is not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise MalformedDeadLetter(f"the body is JSON {type(data).__name__}, not an object")
    if data.get("v") != BODY_VERSION:
        raise MalformedDeadLetter(f"body version v={data.get('v')!r}: this bridge reads "
                                  f"v={BODY_VERSION} (upgrade flowlog or discard it)")
    try:
        letter = DeadLetter.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "<body>"
        raise MalformedDeadLetter(f"field {where} is invalid: {err['msg']} "
                                  f"(value {err.get('input')!r})") from exc
    if message_id is not None and message_id != letter.message_id:
        raise MalformedDeadLetter(f"message_id property {message_id!r} differs from the "
                                  f"body's {letter.message_id!r}")
    return letter


# --- the ladder ------------------------------------------------------------------------------

def ladder_for(workflow_id: str, default: list[float], per_workflow: dict[str, list[float]]
               ) -> list[int]:
    """The ladder of a workflow in milliseconds (its own, else the default)."""
    seconds = per_workflow.get(workflow_id, default)
    return [max(1, round(s * 1000)) for s in seconds]


def all_delays_ms(default: list[float], per_workflow: dict[str, list[float]]) -> list[int]:
    """Every delay any ladder uses: one delay queue each."""
    out = set(ladder_for("", default, {}))
    for wid in per_workflow:
        out.update(ladder_for(wid, default, per_workflow))
    return sorted(out)


def _word(value: str) -> str:
    return re.sub(r"[.#*\s]", "_", value) or "_"


def routing_key(stage: str, letter: DeadLetter, delay_ms: int | None = None) -> str:
    """``delay.<ms>.<workflow>.<node_type>``, ``due.<workflow>.<node_type>`` or
    ``parked.<workflow>.<node_type>``: bind your own queue to ``*.#.<node_type>`` etc."""
    tail = f"{_word(letter.workflow_id)}.{_word(letter.node_type or 'unknown')}"
    if stage == DELAY:
        return f"{DELAY}.{delay_ms}.{tail}"
    return f"{stage}.{tail}"


def route(letter: DeadLetter, ladder_ms: list[int]) -> tuple[str, int | None]:
    """Where a new dead letter goes: (stage, delay) — the rung's delay queue, or parking
    once the ladder is used up."""
    if letter.rung < len(ladder_ms):
        return DELAY, ladder_ms[letter.rung]
    return PARKED, None
