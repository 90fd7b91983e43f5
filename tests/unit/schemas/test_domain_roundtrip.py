"""Round trips through the table-driven mapping and the real codec, for every event type the
domain knows: domain → wire record → Avro bytes → wire record → domain gives the same value.

The values are drawn from each type's declaration (`flowlog.schemas.domaingen.domain_specs`,
the same table `flowlog.aggregates.records` maps by), so a new event or field is covered
without touching this test.
"""

from __future__ import annotations

import types
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Union, get_args, get_origin

import pytest
from flowlog.aggregates import records
from flowlog.aggregates.execution import events as dev
from flowlog.aggregates.execution import inputs as dinp
from flowlog.schemas.codec import Codec
from flowlog.schemas.domaingen import FieldSpec, TypeSpec, _strip
from flowlog.schemas.events import EVENT_TYPES
from flowlog.schemas.model import Record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.unit
CODEC = Codec()
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
INT32 = st.integers(-(2**31), 2**31 - 1)
LONG = st.integers(-(2**63), 2**63 - 1)
FLOAT = st.floats(allow_nan=False, allow_infinity=False)
WHEN = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1),
                    timezones=st.just(UTC))
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | LONG | FLOAT | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8)
ERROR = st.fixed_dictionaries(
    {"type": TEXT.filter(bool), "message": TEXT, "retryable": st.booleans()},
    optional={"retry_at": WHEN.map(datetime.isoformat)})
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _base(ann: Any) -> tuple[Any, bool]:
    ann, _ = _strip(ann)
    if get_origin(ann) in (Union, types.UnionType):
        return _strip(next(a for a in get_args(ann) if a is not type(None)))[0], True
    return ann, False


def _int_for(meta: list[Any]) -> st.SearchStrategy[int]:
    return INT32 if any(type(m).__name__ == "AvroInt" for m in meta) else LONG


def _record(model: type[Record]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({n: _wire_scalar(info.annotation, info.metadata)
                                  for n, info in model.model_fields.items()})


def _wire_scalar(ann: Any, meta: list[Any]) -> st.SearchStrategy[Any]:
    if ann is bool:
        return st.booleans()
    if ann is int:
        return _int_for(meta)
    if ann is float:
        return FLOAT
    return TEXT


def _field(name: str, f: FieldSpec) -> st.SearchStrategy[Any]:
    info = EVENT_TYPES[name].model_fields[f.name]
    base, nullable = _base(info.annotation)
    inner: st.SearchStrategy[Any]
    if f.wire == "json":
        inner = (st.dictionaries(TEXT, JSON_VALUE, max_size=3) if f.type.startswith("dict")
                 else JSON_VALUE)
        return inner  # JSON null is a value: the field is never left out
    if f.wire == "error":
        inner = ERROR
    elif f.wire == "enum":
        assert isinstance(base, type) and issubclass(base, Enum)
        inner = st.sampled_from([m.value for m in base])
    elif f.wire == "records":
        (item,) = get_args(base)
        inner = st.lists(_record(item), max_size=2).map(tuple)
    elif f.name == "seq":
        inner = st.integers(1, 2**40)
    elif get_origin(base) is list:
        inner = st.lists(TEXT, max_size=3)
    elif "datetime" in f.type:
        inner = WHEN
    elif f.type.startswith("int"):
        inner = INT32 if _is_int32(name, f.name) else LONG  # as the .avsc says
    elif base is float:
        inner = FLOAT
    elif base is bool:
        inner = st.booleans()
    else:
        inner = TEXT
    # None only where both forms allow it (the domain's seq is an int, the wire's nullable)
    return st.none() | inner if nullable and f.type.endswith("| None") else inner


def _is_int32(name: str, field: str) -> bool:
    schema = CODEC_SCHEMAS[name]
    return any(f["name"] == field and "int" in (f["type"] if isinstance(f["type"], list)
                                                 else [f["type"]]) for f in schema["fields"])


def _schemas() -> dict[str, dict[str, Any]]:
    from flowlog.schemas.registry import default_catalog

    catalog = default_catalog()
    return {name: catalog.newest(name).schema for name in EVENT_TYPES}


CODEC_SCHEMAS = _schemas()


def _domain_values(spec: TypeSpec) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({f.name: _field(spec.name, f) for f in spec.fields})


EVENTS = sorted(records.SPECS["event"])
INPUTS = sorted(records.SPECS["input"])


@pytest.mark.parametrize("name", EVENTS)
def test_every_execution_event_survives_domain_wire_domain(name: str) -> None:
    spec = records.SPECS["event"][name]
    cls = dev.EVENT_TYPES[name]

    @SETTINGS
    @given(_domain_values(spec))
    def roundtrip(values: dict[str, Any]) -> None:
        event = cls(**values)
        batch = records.batch_record([event], values["causation_id"])
        decoded = CODEC.decode(CODEC.encode("ExecutionEventBatch", batch))
        assert records.batch_events(decoded.record) == [event]
        # the single event is a valid record of its own schema too
        single = CODEC.decode(CODEC.encode(name, records.event_to_record(event)))
        assert records.record_to_event(single.record) == event

    roundtrip()


ENVELOPE_GIVEN = {
    "occurred_at": WHEN, "execution_id": TEXT, "workflow_id": TEXT,
    "workflow_version": INT32, "seq": st.none(), "correlation_id": st.none() | TEXT,
    "causation_id": st.none() | TEXT, "tenant": TEXT, "requested_by": st.none() | TEXT,
}


@pytest.mark.parametrize("name", INPUTS)
def test_every_input_survives_domain_wire_domain(name: str) -> None:
    spec = records.SPECS["input"][name]
    cls = dinp.INPUT_TYPES[name]
    wire_only = st.fixed_dictionaries({f: ENVELOPE_GIVEN[f] for f, _ in spec.wire_only})

    @SETTINGS
    @given(_domain_values(spec), wire_only)
    def roundtrip(values: dict[str, Any], envelope: dict[str, Any]) -> None:
        inp = cls(**values)
        record = records.input_to_record(inp, **envelope)
        decoded = CODEC.decode(CODEC.encode(name, record))
        assert decoded.name == name
        back = records.record_to_input(name, decoded.record)
        assert back == inp

    roundtrip()


def test_an_input_record_without_a_required_field_is_a_wire_error() -> None:
    with pytest.raises(records.WireError, match=r"RetryNodeRequested\.node_id"):
        records.record_to_input("RetryNodeRequested", {"event_id": "e", "reason": ""})
    with pytest.raises(records.WireError, match="pass occurred_at"):
        records.input_to_record(dinp.CancelRequested(event_id="e"))


def test_the_wire_defaults_and_special_cases_come_from_the_table() -> None:
    # JSON null in a trigger's input is the domain's default (an empty object)
    got = records.record_to_input("TriggerReceived", {
        "event_id": "e", "execution_id": "x", "workflow_id": "w", "workflow_version": 0,
        "source": "manual", "input": "null", "tenant": None}, workflow_version=3)
    assert isinstance(got, dinp.TriggerReceived)
    assert (got.input, got.tenant, got.workflow_version) == ({}, "default", 3)
    # the error value: retryable unless it says so, retry_at as ISO text in the domain
    record = records.event_to_record(dev.NodeFailed(
        event_id="e", seq=1, occurred_at=datetime(2026, 1, 1, tzinfo=UTC), execution_id="x",
        workflow_id="w", workflow_version=1, correlation_id=None, causation_id=None,
        tenant="t", node_id="n", attempt=1,
        error={"type": "T", "message": "m", "retry_at": "2026-01-01T00:00:01+00:00"}))
    assert record["error"]["retryable"] is True
    assert record["error"]["retry_at"] == datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
