"""The codec's compiled path writes and reads exactly what plain fastavro does.

Every kept schema is compiled into Python writer and reader functions (schemas/codec.py,
"the compiled path"). These tests encode random valid records of every event type, and
random batches holding every execution event type, both ways and compare byte for byte;
they decode the bytes both ways and compare the records; and they check that whatever the
compiled functions decline (odd value types, corrupt bodies) still gets fastavro's bytes or
fastavro's error.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from flowlog.schemas.codec import (
    CONFLUENT_MAGIC,
    SINGLE_OBJECT_MAGIC,
    Codec,
    compiled_schema,
)
from flowlog.schemas.errors import DecodeError, EncodeError
from flowlog.schemas.events import EVENT_TYPES, EXECUTION_TYPES, ExecutionEventBatch
from flowlog.schemas.model import NAMESPACE, Event
from flowlog.schemas.registry import default_catalog
from flowlog.schemas.testing import batch_of, events, texts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.unit
CATALOG = default_catalog()
COMPILED, PLAIN = Codec(), Codec(compiled=False)
BATCH = "ExecutionEventBatch"
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def fastavro_body(name: str, record: dict[str, Any]) -> bytes:
    """The body plain fastavro writes (the batch's events in tuple notation, as always)."""
    if name == BATCH:
        record = {**record, "events": [(f"{NAMESPACE}.{e['event_type']}", e)
                                       for e in record["events"]]}
    buf = io.BytesIO()
    schemaless_writer(buf, CATALOG.newest(name).parsed, record)
    return buf.getvalue()


def fastavro_read(name: str, body: bytes) -> Any:
    return schemaless_reader(io.BytesIO(body), CATALOG.newest(name).parsed, None)


def check_both_ways(name: str, record: dict[str, Any]) -> None:
    version = CATALOG.newest(name)
    compiled = compiled_schema(version)
    assert compiled is not None, f"{name} is not compiled"
    expected = fastavro_body(name, record)
    # the compiled writer itself takes the record (it does not decline valid records)
    buf = bytearray()
    if name == BATCH:
        record = {**record, "events": [(f"{NAMESPACE}.{e['event_type']}", e)
                                       for e in record["events"]]}
    compiled.write(buf, record)
    assert bytes(buf) == expected
    # and reads it back into what fastavro reads, to the last byte
    back, end = compiled.read(expected, 0)
    assert end == len(expected)
    assert back == fastavro_read(name, expected)
    # through the codec: header + the same body; decoded equal
    data = COMPILED.encode(name, record if name != BATCH else _untupled(record))
    assert data == SINGLE_OBJECT_MAGIC + version.fingerprint + expected
    assert data == PLAIN.encode(name, record if name != BATCH else _untupled(record))
    assert COMPILED.decode(data) == PLAIN.decode(data)


def _untupled(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "events": [e for _, e in record["events"]]}


def test_every_kept_schema_compiles() -> None:
    for versions in CATALOG.versions.values():
        for version in versions:
            assert compiled_schema(version) is not None, version.name


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_every_event_type_is_byte_identical(name: str) -> None:
    @SETTINGS
    @given(events(EVENT_TYPES[name]))
    def check(event: Event) -> None:
        check_both_ways(name, event.to_avro())

    check()


def batches_with(cls: type[Event]) -> st.SearchStrategy[ExecutionEventBatch]:
    """Batches of 1-5 execution events, at least one of them a ``cls``."""
    any_event = st.one_of([events(c) for c in EXECUTION_TYPES])

    picked = st.builds(lambda one, rest, at: [*rest[:at], one, *rest[at:]],
                       events(cls), st.lists(any_event, max_size=4), st.integers(0, 4))
    shared = st.none() | st.datetimes(datetime(1971, 1, 1), datetime(2200, 1, 1),
                                      timezones=st.just(UTC))
    return st.builds(batch_of, texts, st.integers(1, 2**40), picked, shared)


@pytest.mark.parametrize("cls", EXECUTION_TYPES, ids=lambda c: c.__name__)
def test_batches_holding_every_execution_event_type_are_byte_identical(
    cls: type[Event],
) -> None:
    @SETTINGS
    @given(batches_with(cls))
    def check(batch: ExecutionEventBatch) -> None:
        check_both_ways(BATCH, batch.to_avro())

    check()


def test_the_batch_the_orchestrator_writes_is_byte_identical() -> None:
    from flowlog.aggregates import records as wire
    from flowlog.aggregates.execution import events as dev

    now = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    env: dict[str, Any] = {"occurred_at": now, "execution_id": "ex", "workflow_id": "wf",
                           "workflow_version": 3, "correlation_id": None,
                           "causation_id": "c", "tenant": "default"}
    events_ = [
        dev.NodeSucceeded(event_id="a", seq=4, node_id="n", attempt=1, output={"x": 1}, **env),
        dev.NodeScheduled(event_id="b", seq=5, node_id="m", node_type="tool", attempt=1,
                          input=None, task_key="ex:m:1", **env),
    ]
    check_both_ways(BATCH, wire.batch_record(events_, "cause"))


class _Registry:
    def register_schema(self, subject: str, schema: Any) -> int:
        return 258


def test_confluent_framing_is_unchanged() -> None:
    record = _node_started()
    data = Codec(registry=_Registry()).encode("NodeStarted", record)
    assert data[:5] == CONFLUENT_MAGIC + b"\x00\x00\x01\x02"
    assert data[5:] == fastavro_body("NodeStarted", record)


def _node_started(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": "e", "event_type": "NodeStarted",
        "occurred_at": datetime(2024, 5, 1, tzinfo=UTC), "execution_id": "ex",
        "workflow_id": "wf", "workflow_version": 1, "seq": 3, "correlation_id": None,
        "causation_id": None, "tenant": "default", "node_id": "n", "attempt": 1,
    }
    record.update(changes)
    return {k: v for k, v in record.items() if v is not _MISSING}


_MISSING = object()


class _Str(str):
    pass


@pytest.mark.parametrize("changes", [
    {},
    {"workflow_version": True},  # a bool as an int (in a union fastavro refuses it)
    {"attempt": 2**40},  # fastavro does not check the int range outside unions
    {"node_id": _Str("n")},
    {"correlation_id": _Str("c")},
    {"occurred_at": 1_700_000_000_000_000},  # timestamps as ints pass through
    {"occurred_at": datetime(2024, 5, 1, 3, tzinfo=timezone(timedelta(hours=-5)))},
    {"occurred_at": datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC)},
    {"tenant": _MISSING},  # the default
    {"seq": _MISSING, "correlation_id": _MISSING},  # nullable: null
    {"seq": 2**63 - 1},
    {"seq": -(2**63)},
    {"node_id": "ü€😀" * 40},  # multi-byte UTF-8, length over 64
], ids=repr)
def test_odd_but_accepted_values_get_fastavro_bytes(changes: dict[str, Any]) -> None:
    record = _node_started(**changes)
    assert COMPILED.encode("NodeStarted", record) == PLAIN.encode("NodeStarted", record)


@pytest.mark.parametrize("changes", [
    {"seq": True},
    {"seq": 2**63},
    {"attempt": "1"},
    {"node_id": None},
    {"node_id": b"n"},
    {"correlation_id": 5},
    {"occurred_at": "2024-05-01"},
    {"event_id": _MISSING},
], ids=repr)
def test_refused_values_still_raise_encode_errors(changes: dict[str, Any]) -> None:
    record = _node_started(**changes)
    try:
        expected: Any = PLAIN.encode("NodeStarted", record)
    except EncodeError:
        expected = EncodeError
    if expected is EncodeError:
        with pytest.raises(EncodeError):
            COMPILED.encode("NodeStarted", record)
    else:  # fastavro takes it (a bool in a non-union long): so must we, identically
        assert COMPILED.encode("NodeStarted", record) == expected


def test_unknown_event_type_in_a_batch_is_an_encode_error() -> None:
    record = {"execution_id": "ex", "first_seq": 1, "last_seq": 1, "causation_id": None,
              "events": [_node_started(event_type="NoSuchEvent")]}
    with pytest.raises(EncodeError):
        COMPILED.encode(BATCH, record)


@SETTINGS
@given(batches_with(EXECUTION_TYPES[0]), st.data())
def test_corrupt_and_truncated_bodies_fail_as_before(batch: ExecutionEventBatch,
                                                     data: st.DataObject) -> None:
    good = COMPILED.encode_event(batch)
    cut = data.draw(st.integers(10, len(good) - 1))
    flip = data.draw(st.integers(10, len(good) - 1))
    byte = data.draw(st.integers(0, 255))
    for bad in (good[:cut], good[:flip] + bytes([byte]) + good[flip + 1:], good + b"\x00"):
        outcomes = []
        for codec in (COMPILED, PLAIN):
            try:
                outcomes.append(codec.decode(bad))
            except DecodeError as exc:
                outcomes.append(type(exc))
        assert outcomes[0] == outcomes[1]


def test_the_fast_decoded_constructor_sets_every_field() -> None:
    from dataclasses import fields

    from flowlog.schemas.codec import Decoded, _decoded

    # _decoded sets the slots one by one: a new field of Decoded must be added there too
    assert [f.name for f in fields(Decoded)] == ["name", "record", "writer_version",
                                                 "claim_uri"]
    assert _decoded("X", {"a": 1}, 3) == Decoded("X", {"a": 1}, 3)
