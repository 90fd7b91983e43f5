"""The records module: wire records ⇄ domain values, and the builders of every derived record.

Both `streams/` (the engine) and `projections/` (the read side) import this module; it is
the only place that knows both shapes, and nothing else builds a wire record by hand.

* Mapping: Avro record dicts (as the codec reads and writes them) to the aggregate's
  inputs and events, and back. The hot path works on the codec's plain dicts (no pydantic
  per event): JSON-valued fields travel as canonical JSON text, timestamps as aware
  datetimes.
* Derived ids: every record derived from another gets an id derived from what caused it
  (`task_event_id`, `result_event_id`, `timer_fired_event_id`, `admitted_event_id`, next
  to `execution_event_id`), so a re-derived record is the same record.
* Builders: `task_record`, `result_record`, `timer_fired_record`, `admitted_record`.
* Errors: one error value (`error_from`, retryable unless it says otherwise).

Pure: no I/O, no clock (times are passed in). The domain modules never import it.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any

import orjson
from flowlog.aggregates.execution import events as dev
from flowlog.aggregates.execution import inputs as dinp
from flowlog.aggregates.execution.jsonvalue import error_from
from flowlog.schemas.events import EVENT_TYPES
from flowlog.schemas.ids import execution_event_id as execution_event_id  # re-exported
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


# --- derived ids (fixed forever: changing one changes the id of every such record) ----------

def task_event_id(task_key: str) -> str:
    """The id of the `NodeTaskIssued` record of one node attempt."""
    return derived_id(task_key, "task")


def result_event_id(task_key: str) -> str:
    """The id of the `NodeResultReported` record of one node attempt (one per attempt)."""
    return derived_id(task_key, "result")


def timer_fired_event_id(execution_id: str, timer_id: str) -> str:
    """The id of the `TimerFired` input of one armed timer."""
    return derived_id(execution_id, timer_id, "fired")


def admitted_event_id(execution_id: str) -> str:
    """The id of the `ExecutionAdmitted` command that starts a queued execution."""
    return derived_id(execution_id, "admitted")


def _json_in(text: Any) -> Any:
    if isinstance(text, str):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise WireError(f"JSON field is not valid JSON: {exc}") from exc
    return text


def error_out(err: dict[str, Any] | None) -> dict[str, Any] | None:
    """The `ErrorInfo` record of an error value (None stays None)."""
    if err is None:
        return None
    out = error_from(err)
    retry_at = out.get("retry_at")
    out["retry_at"] = None if retry_at is None else datetime.fromisoformat(retry_at)
    return out


def error_in(err: dict[str, Any] | None) -> dict[str, Any] | None:
    """The domain error value of a decoded `ErrorInfo` record (None stays None)."""
    return None if err is None else error_from(err)


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
        out["error"] = error_out(out["error"])
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
    if kwargs.get("error") is not None:
        kwargs["error"] = error_in(kwargs["error"])
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
            output=_json_in(r.get("output")), error=error_in(r.get("error")),
            task_key=r["task_key"],
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


# --- builders of derived records ---------------------------------------------------------------

def task_record(scheduled: dict[str, Any], *, input_json: str, config_json: str,
                timeout_ms: int) -> dict[str, Any]:
    """The `NodeTaskIssued` record that follows a `NodeScheduled` execution-event record.

    ``config_json`` is the rendered node config (secrets still as references); the task is
    caused by the scheduling event and due ``timeout_ms`` after it.
    """
    task_key = scheduled["task_key"]
    return {
        **envelope("NodeTaskIssued", event_id=task_event_id(task_key),
                   execution_id=scheduled["execution_id"],
                   workflow_id=scheduled["workflow_id"],
                   workflow_version=scheduled["workflow_version"],
                   occurred_at=scheduled["occurred_at"],
                   correlation_id=scheduled["correlation_id"],
                   causation_id=scheduled["event_id"], tenant=scheduled["tenant"]),
        "node_id": scheduled["node_id"], "node_type": scheduled["node_type"],
        "attempt": scheduled["attempt"], "task_key": task_key, "input": input_json,
        "config": config_json, "timeout_ms": timeout_ms,
        "deadline_at": scheduled["occurred_at"] + timedelta(milliseconds=timeout_ms),
    }


def result_record(task: dict[str, Any] | Any, *, status: str, output: Any = None,
                  error: dict[str, Any] | None = None, started_at: datetime,
                  finished_at: datetime, model_calls: list[dict[str, Any]] | None = None,
                  tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The `NodeResultReported` record of one attempt.

    ``task`` is the `NodeTaskIssued` record (or model), or the `NodeScheduled` record when
    the task could not even be issued; either carries the envelope and the task key.
    ``output`` is a JSON value (None when failed).
    """
    def get(name: str) -> Any:
        return task[name] if isinstance(task, dict) else getattr(task, name)

    task_key = get("task_key")
    return {
        **envelope("NodeResultReported", event_id=result_event_id(task_key),
                   execution_id=get("execution_id"), workflow_id=get("workflow_id"),
                   workflow_version=get("workflow_version"), occurred_at=finished_at,
                   correlation_id=get("correlation_id"), causation_id=get("event_id"),
                   tenant=get("tenant")),
        "node_id": get("node_id"), "attempt": get("attempt"), "task_key": task_key,
        "status": status, "output": None if output is None else canonical_json(output),
        "error": error_out(error), "started_at": started_at, "finished_at": finished_at,
        "model_calls": list(model_calls or ()), "tool_calls": list(tool_calls or ()),
    }


def timer_fired_record(*, execution_id: str, workflow_id: str, workflow_version: int,
                       tenant: str, correlation_id: str | None, timer_id: str, kind: str,
                       node_id: str | None, attempt: int | None, due_at: datetime,
                       occurred_at: datetime) -> dict[str, Any]:
    """The `TimerFired` input of an armed timer whose due time has come."""
    return {
        **envelope("TimerFired", event_id=timer_fired_event_id(execution_id, timer_id),
                   execution_id=execution_id, workflow_id=workflow_id,
                   workflow_version=workflow_version, occurred_at=occurred_at,
                   correlation_id=correlation_id, causation_id=None, tenant=tenant),
        "timer_id": timer_id, "kind": kind, "node_id": node_id, "attempt": attempt,
        "due_at": due_at,
    }


def admitted_record(*, execution_id: str, workflow_id: str, workflow_version: int,
                    tenant: str, occurred_at: datetime) -> dict[str, Any]:
    """The `ExecutionAdmitted` command that starts a queued execution (flow control)."""
    return envelope("ExecutionAdmitted", event_id=admitted_event_id(execution_id),
                    execution_id=execution_id, workflow_id=workflow_id,
                    workflow_version=workflow_version, occurred_at=occurred_at,
                    correlation_id=None, causation_id=None, tenant=tenant)
