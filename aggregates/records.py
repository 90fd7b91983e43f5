"""The records module: wire records ⇄ domain values, and the builders of every derived record.

Both `streams/` (the engine) and `projections/` (the read side) import this module; it is
the only place that knows both shapes, and nothing else builds a wire record by hand.

* Mapping: Avro record dicts (as the codec reads and writes them) to the aggregate's
  inputs and events, and back, driven by one table (`SPECS`) derived from the contract's
  declarations (`flowlog.schemas.domaingen.domain_specs`): no per-event code. The hot path
  works on the codec's plain dicts (no pydantic per event): JSON-valued fields travel as
  canonical JSON text, timestamps as aware datetimes.
* Derived ids: every record derived from another gets an id derived from what caused it
  (`task_event_id`, `result_event_id`, `timer_fired_event_id`, `admitted_event_id`, next
  to `execution_event_id`), so a re-derived record is the same record.
* Builders: `task_record`, `result_record`, `timer_fired_record`, `admitted_record`.
* Errors: one error value (`error_from`, retryable unless it says otherwise).

Pure: no I/O, no clock (times are passed in). The domain modules never import it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import orjson
from flowlog.aggregates.execution import events as dev
from flowlog.aggregates.execution import inputs as dinp
from flowlog.aggregates.execution.jsonvalue import error_from
from flowlog.schemas.domainform import NO_DEFAULT
from flowlog.schemas.domaingen import FieldSpec, TypeSpec, domain_specs
from flowlog.schemas.ids import execution_event_id as execution_event_id  # re-exported
from flowlog.schemas.ids import flowlog_uuid5
from flowlog.schemas.model import canonical_json

_ENVELOPE = ("event_id", "event_type", "occurred_at", "execution_id", "workflow_id",
             "workflow_version", "seq", "correlation_id", "causation_id", "tenant")
#: the domain forms of every execution event and input, from the contract's declarations
#: (the pydantic models and their ``domain_forms``, schemas/domainform.py)
SPECS: dict[str, dict[str, TypeSpec]] = domain_specs()
#: JSON-valued domain fields per event type (canonical JSON text on the wire)
JSON_FIELDS: dict[str, tuple[str, ...]] = {
    name: tuple(f.name for f in spec.fields if f.wire == "json")
    for kind in SPECS.values() for name, spec in kind.items()
}
INPUT_NAMES = frozenset(SPECS["input"])


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


# --- the mapping table: one converter per wire kind (schemas/domaingen.FieldSpec.wire) ----
#
# Special cases are declared, not coded per event: JSON-valued fields (canonical JSON text ⇄
# a JSON value; a wire-nullable one keeps null), the error value (`ErrorInfo` ⇄ `error_from`,
# retryable unless it says otherwise), Avro enums (⇄ text) and arrays of records (⇄ a tuple
# of dicts). Claim checks are framing below this mapping: the codec (schemas/claimcheck.py)
# fetches the blob and hands over the full record, so no mapping entry knows them.

_Conv = Callable[[Any], Any]


def _records_in(value: Any) -> tuple[Any, ...]:
    return tuple(value)


def _records_out(value: Any) -> list[Any]:
    return list(value)


_TO_DOMAIN: dict[str, _Conv | None] = {
    "plain": None, "json": _json_in, "error": error_in, "enum": str, "records": _records_in,
}
_TO_WIRE: dict[str, _Conv | None] = {
    "plain": None, "json": canonical_json, "error": error_out, "enum": None,
    "records": _records_out,
}


def _default_of(f: FieldSpec) -> Any:
    if f.factory is not None:
        return {"dict": dict, "list": list, "tuple": tuple}[f.factory]()
    return f.default


def _out_table(spec: TypeSpec) -> tuple[tuple[str, _Conv | None, bool], ...]:
    """(field, domain → wire converter, keep None as null) per domain field."""
    return tuple((f.name, _TO_WIRE[f.wire], f.wire_nullable or f.wire != "json")
                 for f in spec.fields)


def _to_record(name: str, obj: Any, table: tuple[tuple[str, _Conv | None, bool], ...]
               ) -> dict[str, Any]:
    out: dict[str, Any] = {"event_type": name}
    for f, conv, null_stays in table:
        value = getattr(obj, f)
        if conv is not None and (value is not None or not null_stays):
            value = conv(value)
        out[f] = value
    return out


# --- domain events ⇄ Avro records --------------------------------------------------------

_EVENT_OUT = {name: _out_table(spec) for name, spec in SPECS["event"].items()}
_EVENT_IN: dict[str, tuple[type[dev.ExecutionEvent], tuple[tuple[str, _Conv | None], ...]]] = {
    name: (dev.EVENT_TYPES[name], tuple((f.name, _TO_DOMAIN[f.wire]) for f in spec.fields))
    for name, spec in SPECS["event"].items()
}


def event_to_record(event: dev.ExecutionEvent) -> dict[str, Any]:
    """A domain execution event as the Avro record of the same name."""
    return _to_record(event.event_type, event, _EVENT_OUT[event.event_type])


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
    entry = _EVENT_IN.get(name)
    if entry is None:
        raise WireError(f"{name} is not an execution event")
    cls, table = entry
    kwargs: dict[str, Any] = {}
    for f, conv in table:
        value = record.get(f)
        kwargs[f] = value if conv is None or value is None else conv(value)
    return cls(**kwargs)


def batch_events(record: dict[str, Any]) -> list[dev.ExecutionEvent]:
    """The domain events of a decoded `ExecutionEventBatch` record."""
    return [record_to_event(e) for e in record["events"]]


# --- inputs -------------------------------------------------------------------------------

#: per input: (class, (field, wire → domain converter, default when null or absent))
_INPUT_IN: dict[str, tuple[type[dinp.Input], tuple[tuple[str, _Conv | None, FieldSpec], ...]]] = {
    name: (dinp.INPUT_TYPES[name], tuple((f.name, _TO_DOMAIN[f.wire], f) for f in spec.fields))
    for name, spec in SPECS["input"].items()
}
_INPUT_OUT = {name: _out_table(spec) for name, spec in SPECS["input"].items()}


def record_to_input(name: str, r: dict[str, Any], workflow_version: int | None = None
                    ) -> dinp.Input:
    """An orchestrator input record (already decoded and validated) as a domain input.

    ``workflow_version`` overrides a trigger's version (0 in a trigger means "the newest").
    A field the record holds as null (or lacks) takes the domain's default; a required one
    is a `WireError` naming it.
    """
    entry = _INPUT_IN.get(name)
    if entry is None:
        raise WireError(f"{name} is not an orchestrator input")
    cls, table = entry
    kwargs: dict[str, Any] = {}
    for f, conv, spec in table:
        value = r.get(f)
        if value is None and spec.required and not spec.wire_nullable:
            raise WireError(f"{name}.{f} is missing: the record must carry it")
        if value is not None and conv is not None:
            value = conv(value)  # JSON text "null" becomes None: then the default holds too
        if value is None and not spec.required:
            value = _default_of(spec)
        kwargs[f] = value
    if workflow_version is not None and "workflow_version" in kwargs:
        kwargs["workflow_version"] = workflow_version
    return cls(**kwargs)


def input_to_record(inp: dinp.Input, **wire: Any) -> dict[str, Any]:
    """The Avro record of a domain input; ``wire`` gives the fields the domain leaves out
    (the envelope: ``execution_id``, ``workflow_id``, ``occurred_at``, ...). Those not
    given take their wire default; a required one missing is a `WireError`."""
    name = inp.event_type
    table = _INPUT_OUT.get(name)
    if table is None:
        raise WireError(f"{name} is not an orchestrator input")
    out: dict[str, Any] = {}
    for f, default in SPECS["input"][name].wire_only:
        if f in wire:
            out[f] = wire[f]
        elif default is NO_DEFAULT:
            raise WireError(f"{name}.{f}: the domain input lacks it; pass {f}=...")
        else:
            out[f] = default
    return {**out, **_to_record(name, inp, table)}


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
