"""Every event and input has three forms — the Avro schema (.avsc), the contract's pydantic
type and the domain's dataclass. Since issue 8 (item 1) the .avsc and the dataclass are
generated from the pydantic declaration (`flowlog schemas check` fails on drift; see
test_domain_generated.py), so the forms cannot drift apart silently. This test stays as a
policy check of what the declarations allow: the same field names, and the same
nullability, for every execution event and every orchestrator input (JSON-valued fields
travel as JSON text, so their nullability is the JSON value's, not checked here), but for
the deviations listed below — a new one, declared in a ``domain_forms``, fails here until
it is listed with its reason.

Inputs may leave out envelope fields the domain does not use (the state knows them);
each such difference is listed below with its reason, so a new one fails the test.
"""

from __future__ import annotations

import types
import typing
from dataclasses import fields
from typing import Any

import pytest
from flowlog.aggregates.execution import events as dev
from flowlog.aggregates.execution import inputs as dinp
from flowlog.aggregates.records import JSON_FIELDS
from flowlog.schemas.events import EVENT_TYPES
from flowlog.schemas.registry import default_catalog

pytestmark = pytest.mark.unit

ENVELOPE = {"event_id", "event_type", "occurred_at", "execution_id", "workflow_id",
            "workflow_version", "seq", "correlation_id", "causation_id", "tenant"}
#: input -> wire fields the domain input leaves out on purpose
#: who issued an operator command is audit data (read from the command record by the audit
#: tools); no decision depends on it
_WHO = {"requested_by"}
INPUT_OMITS: dict[str, set[str]] = {
    "CancelRequested": ENVELOPE - {"event_id"} | _WHO,
    "RetryNodeRequested": ENVELOPE - {"event_id"} | _WHO,
    "ResumeRequested": ENVELOPE - {"event_id"} | _WHO,
    # the state knows the execution; a trigger carries what starts one
    "TriggerReceived": ENVELOPE - {"event_id", "execution_id", "workflow_id",
                                   "workflow_version", "correlation_id", "tenant"},
}
#: (input, field) whose domain form accepts None where the wire does not: domain tests and
#: recorded histories build inputs without them; the wire always carries them
DOMAIN_LOOSER = {("NodeResultReported", "started_at"), ("NodeResultReported", "finished_at"),
                 ("TimerFired", "due_at")}


#: the wire envelope is shared with producer-made events, whose seq is null; execution
#: events require it by a validator (schemas.shared.ExecutionEvent), the domain by type
WIRE_ENVELOPE_LOOSER = {"seq"}


def _nullable_py(annotation: Any) -> bool:
    if isinstance(annotation, str):  # postponed annotations of the dataclasses
        return "None" in annotation
    return type(None) in typing.get_args(annotation) or (
        isinstance(annotation, types.UnionType) and type(None) in annotation.__args__)


def _avro_fields(name: str) -> dict[str, bool]:
    schema = default_catalog().newest(name).schema
    return {f["name"]: isinstance(f["type"], list) and "null" in f["type"]
            for f in schema["fields"]}


def _pydantic_fields(name: str) -> dict[str, bool]:
    return {n: _nullable_py(f.annotation) for n, f in EVENT_TYPES[name].model_fields.items()}


@pytest.mark.parametrize("name", sorted(dev.EVENT_TYPES))
def test_execution_event_has_the_same_fields_in_all_three_forms(name: str) -> None:
    domain = {f.name: _nullable_py(f.type) for f in fields(dev.EVENT_TYPES[name])}
    wire = _pydantic_fields(name)
    avro = _avro_fields(name)
    assert set(wire) == set(avro), f"{name}: pydantic and .avsc differ"
    assert set(domain) == set(wire) - {"event_type"}, f"{name}: domain and pydantic differ"
    for field_name, nullable in domain.items():
        if field_name in JSON_FIELDS[name]:
            continue  # JSON text on the wire: JSON null is "null", not a null field
        if field_name in WIRE_ENVELOPE_LOOSER:
            assert not nullable and wire[field_name] and avro[field_name]
            continue
        assert nullable == wire[field_name] == avro[field_name], (
            f"{name}.{field_name}: nullable domain={nullable} pydantic={wire[field_name]} "
            f"avro={avro[field_name]}")


@pytest.mark.parametrize("name", sorted(dinp.INPUT_TYPES))
def test_input_fields_are_wire_fields_with_the_same_nullability(name: str) -> None:
    domain = {f.name: _nullable_py(f.type) for f in fields(dinp.INPUT_TYPES[name])}
    wire = _pydantic_fields(name)
    avro = _avro_fields(name)
    assert set(wire) == set(avro), f"{name}: pydantic and .avsc differ"
    omitted = set(wire) - set(domain) - {"event_type"}
    allowed = INPUT_OMITS.get(name, ENVELOPE - {"event_id"})
    assert omitted <= allowed | {"event_type"}, f"{name}: the domain drops {omitted - allowed}"
    assert set(domain) <= set(wire), f"{name}: domain fields not on the wire: " \
        f"{set(domain) - set(wire)}"
    for field_name, nullable in domain.items():
        if field_name in JSON_FIELDS[name]:
            continue  # JSON text on the wire: JSON null is "null", not a null field
        if (name, field_name) in DOMAIN_LOOSER:
            assert nullable and not wire[field_name]
            continue
        assert nullable == wire[field_name] == avro[field_name], (
            f"{name}.{field_name}: nullable domain={nullable} pydantic={wire[field_name]} "
            f"avro={avro[field_name]}")
