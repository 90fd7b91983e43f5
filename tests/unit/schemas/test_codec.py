"""Framing, bad input and claim checks of the codec."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastavro import schemaless_writer
from flowlog.schemas.claimcheck import LocalBlobStore
from flowlog.schemas.codec import CONFLUENT_MAGIC, SINGLE_OBJECT_MAGIC, Codec
from flowlog.schemas.errors import (
    BadMagicError,
    ClaimCheckError,
    DecodeError,
    EncodeError,
    OversizedError,
    TruncatedError,
    UnknownSchemaError,
)
from flowlog.schemas.events import NodeSucceeded, TriggerReceived
from flowlog.schemas.ids import execution_event_id
from flowlog.schemas.registry import default_catalog, rabin_fingerprint

pytestmark = pytest.mark.unit


def node_succeeded(output: object = None) -> NodeSucceeded:
    return NodeSucceeded(
        event_id=execution_event_id("ex-1", 4), occurred_at=datetime(2024, 5, 1, tzinfo=UTC),
        execution_id="ex-1", workflow_id="wf", workflow_version=2, seq=4,
        causation_id=execution_event_id("ex-1", 3), node_id="summarise", attempt=1,
        output=output if output is not None else {"summary": "ok", "tokens": 12},
    )


def test_rabin_fingerprint_matches_the_avro_spec_vector() -> None:
    # Avro spec: the CRC-64-AVRO fingerprint of "null" is 0x63dd24e7cc258f8a (LE on the wire)
    assert rabin_fingerprint("null") == bytes.fromhex("8a8f25cce724dd63")


def test_single_object_framing_is_magic_then_fingerprint_then_body() -> None:
    codec = Codec()
    data = codec.encode_event(node_succeeded())
    newest = default_catalog().newest("NodeSucceeded")
    assert data[:2] == SINGLE_OBJECT_MAGIC == b"\xc3\x01"
    assert data[2:10] == newest.fingerprint
    body = io.BytesIO()
    schemaless_writer(body, newest.parsed, node_succeeded().to_avro())
    assert data[10:] == body.getvalue()


def test_json_fields_travel_as_canonical_json() -> None:
    record = Codec().decode(Codec().encode_event(node_succeeded({"b": 1, "a": [1, 2]}))).record
    assert record["output"] == '{"a":[1,2],"b":1}'


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", TruncatedError),
        (b"\xc3\x01\x01\x02", TruncatedError),
        (b"\x7fhello world", BadMagicError),
        (b"{\"json\": true}", BadMagicError),
        (b"\xc3\x01" + b"\x00" * 8 + b"body", UnknownSchemaError),
        (CONFLUENT_MAGIC + b"\x00\x00\x00\x07body", UnknownSchemaError),  # no registry
        (b"\x00\x01", TruncatedError),
    ],
)
def test_bad_bytes_raise_decode_errors(data: bytes, error: type[DecodeError]) -> None:
    with pytest.raises(error):
        Codec().decode(data)


def test_truncated_body_and_trailing_bytes_are_decode_errors() -> None:
    data = Codec().encode_event(node_succeeded())
    for cut in (11, len(data) // 2, len(data) - 1):
        with pytest.raises(DecodeError):
            Codec().decode(data[:cut])
    with pytest.raises(DecodeError, match="left after the body"):
        Codec().decode(data + b"\x00\x00")


def test_oversized_records_are_refused_before_reading() -> None:
    data = Codec().encode_event(node_succeeded({"big": "x" * 5000}))
    with pytest.raises(OversizedError, match="exceeds the limit 1000"):
        Codec(max_bytes=1000).decode(data)


def test_encoding_a_record_that_breaks_its_schema_is_an_encode_error() -> None:
    record = node_succeeded().to_avro()
    record["attempt"] = "one"
    with pytest.raises(EncodeError, match="NodeSucceeded"):
        Codec().encode("NodeSucceeded", record)
    with pytest.raises(EncodeError, match="no schema named"):
        Codec().encode("NoSuchEvent", record)


def test_confluent_wire_format_with_a_registry() -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    registry = SchemaRegistryClient.new_client({"url": "mock://flowlog-test"})
    writer = Codec(registry=registry)
    data = writer.encode_event(node_succeeded())
    assert data[:1] == b"\x00"
    schema_id = int.from_bytes(data[1:5], "big")
    registered = json.loads(registry.get_schema(schema_id).schema_str)
    assert registered["name"] == "NodeSucceeded"
    # a reader with the same registry decodes it; one without explains why it cannot
    decoded = Codec(registry=registry).decode(data)
    assert decoded.record["output"] == '{"summary":"ok","tokens":12}'
    with pytest.raises(UnknownSchemaError, match="no schema registry"):
        Codec().decode(data)
    # the reader still reads single-object framing from producers without a registry
    assert Codec(registry=registry).decode(Codec().encode_event(node_succeeded())).name


def test_claim_check_moves_large_events_out_of_line(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    codec = Codec(claim_store=store, claim_threshold=1024)
    big = node_succeeded({"text": "y" * 10_000})
    data = codec.encode_event(big)
    assert len(data) < 1024
    assert codec.decode(data).name == "NodeSucceeded"
    decoded = codec.decode(data)
    assert decoded.claim_uri is not None and decoded.claim_uri.startswith("file://")
    assert decoded.record["output"] == json.dumps({"text": "y" * 10_000}, separators=(",", ":"))
    small = codec.encode_event(node_succeeded())
    assert codec.decode(small).claim_uri is None
    # the same event twice is stored once (content-addressed): retries are harmless
    assert codec.encode_event(big) == data
    assert len(list((tmp_path / "blobs").rglob("*"))) == 2  # one folder, one blob


def test_claim_check_refuses_tampered_or_foreign_blobs(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    codec = Codec(claim_store=store, claim_threshold=100)
    data = codec.encode_event(node_succeeded({"text": "z" * 1000}))
    uri = codec.decode(data).claim_uri
    assert uri is not None
    path = Path(uri.removeprefix("file://"))
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    with pytest.raises(ClaimCheckError, match="does not match its hash"):
        codec.decode(data)
    path.unlink()
    with pytest.raises(ClaimCheckError, match="missing"):
        codec.decode(data)
    forged = codec.encode("ClaimCheck", {"event_type": "NodeSucceeded", "uri": "file:///etc/passwd",
                                         "sha256": "0" * 64, "size": 10})
    with pytest.raises(ClaimCheckError, match="outside the blob store"):
        codec.decode(forged)
    with pytest.raises(ClaimCheckError, match="no blob store"):
        Codec().decode(data)


def test_trigger_ids_are_derived_from_the_dedup_key() -> None:
    a = TriggerReceived(workflow_id="wf", workflow_version=1, source="webhook", input={},
                        dedup_key="order-7")
    b = TriggerReceived(workflow_id="wf", workflow_version=1, source="webhook", input={"x": 1},
                        dedup_key="order-7")
    c = TriggerReceived(workflow_id="wf", workflow_version=1, source="webhook", input={})
    assert a.execution_id == b.execution_id != c.execution_id
    assert a.event_id != b.event_id
    assert a.correlation_id == a.event_id
