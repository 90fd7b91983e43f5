"""Wire types ⇄ domain types: Avro record dicts (as the codec reads and writes them) to the
aggregate's inputs and events, and back.

The hot path works on the codec's plain dicts (no pydantic per event): JSON-valued fields
travel as canonical JSON text, timestamps as aware datetimes. `aggregates` never imports
this module; this module is the only place that knows both shapes.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

import orjson
from flowlog.aggregates.execution import events as dev
from flowlog.aggregates.execution import inputs as dinp
from flowlog.schemas.events import EVENT_TYPES
from flowlog.schemas.ids import flowlog_uuid5
from flowlog.schemas.model import canonical_json

_ENVELOPE = ("event_id", "event_type", "occurred_at", "execution_id", "workflow_id",
             "workflow_version", "seq", "correlation_id", "causation_id", "tenant")
#: JSON-valued fields per Avro event name (from the contract's pydantic types).
JSON_FIELDS: dict[str, tuple[str, ...]] = {
    name: cls._json_fields for name, cls in EVENT_TYPES.items()
}
_NULLABLE_JSON: dict[str, set[str]] = {
    name: {f for f in cls._json_fields
           if type(None) in getattr(cls.model_fields[f].annotation, "__args__", ())}
    for name, cls in EVENT_TYPES.items()
}
_DOMAIN_FIELDS: dict[str, tuple[str, ...]] = {
    name: tuple(f.name for f in fields(cls)) for name, cls in dev.EVENT_TYPES.items()
}
_ERROR_FIELDS = ("error",)


class WireError(ValueError):
    """A decoded record that does not map onto a domain type (quarantine it)."""


def derived_id(*parts: str) -> str:
    """A deterministic event id for a record derived from others (tasks, results, timers)."""
    return flowlog_uuid5(":".join(parts))


def _json_in(text: Any) -> Any:
    if isinstance(text, str):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise WireError(f"JSON field is not valid JSON: {exc}") from exc
    return text


def _error_out(err: dict[str, Any] | None) -> dict[str, Any] | None:
    if err is None:
        return None
    return {"type": str(err.get("type", "Error")), "message": str(err.get("message", "")),
            "retryable": bool(err.get("retryable", False))}


# --- domain events ⇄ Avro records --------------------------------------------------------

def event_to_record(event: dev.ExecutionEvent) -> dict[str, Any]:
    """A domain execution event as the Avro record of the same name."""
    name = event.event_type
    out: dict[str, Any] = {"event_type": name}
    for f in _DOMAIN_FIELDS[name]:
        out[f] = getattr(event, f)
    nullable = _NULLABLE_JSON[name]
    for f in JSON_FIELDS[name]:
        value = out[f]
        if value is not None or f not in nullable:
            out[f] = canonical_json(value)
    if "error" in out:
        out["error"] = _error_out(out["error"])
    return out


def batch_record(events: list[dev.ExecutionEvent], causation_id: str | None) -> dict[str, Any]:
    """The `ExecutionEventBatch` record of one decision (events in seq order)."""
    first = events[0]
    return {
        "execution_id": first.execution_id,
        "first_seq": first.seq,
        "last_seq": events[-1].seq,
        "causation_id": causation_id,
        "events": [event_to_record(e) for e in events],
    }


def record_to_event(record: dict[str, Any]) -> dev.ExecutionEvent:
    """An Avro execution-event record (from a decoded batch) as a domain event."""
    name = record["event_type"]
    cls = dev.EVENT_TYPES.get(name)
    if cls is None:
        raise WireError(f"{name} is not an execution event")
    kwargs = {f: record.get(f) for f in _DOMAIN_FIELDS[name]}
    for f in JSON_FIELDS[name]:
        if f in kwargs:
            kwargs[f] = _json_in(kwargs[f])
    return cls(**kwargs)


def batch_events(record: dict[str, Any]) -> list[dev.ExecutionEvent]:
    """The domain events of a decoded `ExecutionEventBatch` record."""
    return [record_to_event(e) for e in record["events"]]


# --- inputs -------------------------------------------------------------------------------

INPUT_NAMES = frozenset({"TriggerReceived", "CancelRequested", "RetryNodeRequested",
                         "ResumeRequested", "EventReceived", "NodeResultReported",
                         "TimerFired", "ExecutionAdmitted"})


def record_to_input(name: str, r: dict[str, Any], workflow_version: int | None = None
                    ) -> dinp.Input:
    """An orchestrator input record (already decoded and validated) as a domain input.

    ``workflow_version`` overrides a trigger's version (0 in a trigger means "the newest").
    """
    eid = r["event_id"]
    if name == "TriggerReceived":
        inp = _json_in(r.get("input"))
        return dinp.TriggerReceived(
            event_id=eid, execution_id=r["execution_id"], workflow_id=r["workflow_id"],
            workflow_version=workflow_version if workflow_version is not None
            else r["workflow_version"],
            source=str(r.get("source") or "manual"), input=inp if inp is not None else {},
            dedup_key=r.get("dedup_key"), correlation_id=r.get("correlation_id"),
            tenant=r.get("tenant") or "default")
    if name == "NodeResultReported":
        return dinp.NodeResultReported(
            event_id=eid, node_id=r["node_id"], attempt=r["attempt"], status=str(r["status"]),
            output=_json_in(r.get("output")), error=r.get("error"), task_key=r["task_key"],
            started_at=r.get("started_at"), finished_at=r.get("finished_at"),
            model_calls=tuple(r.get("model_calls") or ()),
            tool_calls=tuple(r.get("tool_calls") or ()))
    if name == "TimerFired":
        return dinp.TimerFired(event_id=eid, timer_id=r["timer_id"], kind=str(r["kind"]),
                               node_id=r.get("node_id"), attempt=r.get("attempt"),
                               due_at=r.get("due_at"))
    if name == "CancelRequested":
        return dinp.CancelRequested(event_id=eid, reason=r.get("reason") or "")
    if name == "RetryNodeRequested":
        return dinp.RetryNodeRequested(event_id=eid, node_id=r["node_id"],
                                       reason=r.get("reason") or "")
    if name == "ResumeRequested":
        return dinp.ResumeRequested(event_id=eid, reason=r.get("reason") or "")
    if name == "EventReceived":
        return dinp.EventReceived(event_id=eid, event_name=r["event_name"],
                                  payload=_json_in(r.get("payload")), node_id=r.get("node_id"))
    if name == "ExecutionAdmitted":
        return dinp.ExecutionAdmitted(event_id=eid)
    raise WireError(f"{name} is not an orchestrator input")


def envelope(event_type: str, *, event_id: str, execution_id: str, workflow_id: str,
             workflow_version: int, occurred_at: datetime, correlation_id: str | None,
             causation_id: str | None, tenant: str) -> dict[str, Any]:
    """The envelope fields of a producer-made record (seq null)."""
    return {"event_id": event_id, "event_type": event_type, "occurred_at": occurred_at,
            "execution_id": execution_id, "workflow_id": workflow_id,
            "workflow_version": workflow_version, "seq": None,
            "correlation_id": correlation_id, "causation_id": causation_id, "tenant": tenant}
