"""The decode guard quarantines every kind of bad record and lets the consumer go on."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from flowlog.schemas.codec import Codec
from flowlog.schemas.events import EventQuarantined, NodeSucceeded, to_model
from flowlog.schemas.guard import DecodeGuard
from flowlog.schemas.ids import execution_event_id

pytestmark = pytest.mark.unit


@dataclass
class ListSink:
    sent: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    flushed: int = 0

    def send(self, key: bytes | None, value: bytes) -> None:
        self.sent.append((key, value))

    def flush(self, timeout: float = 30.0) -> None:
        self.flushed += 1


@dataclass
class AioRecord:  # the shape of aiokafka's ConsumerRecord (attributes)
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


class ConfluentMessage:  # the shape of confluent_kafka.Message (methods)
    def __init__(self, rec: AioRecord) -> None:
        self._r = rec

    def topic(self) -> str:
        return self._r.topic

    def partition(self) -> int:
        return self._r.partition

    def offset(self) -> int:
        return self._r.offset

    def key(self) -> bytes | None:
        return self._r.key

    def value(self) -> bytes | None:
        return self._r.value

    def headers(self) -> list[tuple[str, bytes]]:
        return list(self._r.headers)


def good(seq: int) -> bytes:
    return Codec().encode_event(NodeSucceeded(
        event_id=execution_event_id("ex", seq), occurred_at=datetime(2024, 1, 1, tzinfo=UTC),
        execution_id="ex", workflow_id="w", workflow_version=1, seq=seq, node_id="n",
        attempt=1, output={"ok": True}))


def bad_json() -> bytes:
    rec = NodeSucceeded(
        event_id=execution_event_id("ex", 9), execution_id="ex", workflow_id="w",
        workflow_version=1, seq=9, node_id="n", attempt=1, output=1).to_avro()
    rec["output"] = "{not json"
    return Codec().encode("NodeSucceeded", rec)


BAD = {
    "UnknownSchemaError": b"\xc3\x01" + bytes(range(8)) + b"\x02ab",
    "TruncatedError": good(1)[:15],
    "BadMagicError": b"\x42" + good(1)[1:],
    "OversizedError": b"\xc3\x01" + b"x" * 5000,
    "EventValidationError": bad_json(),
}


@pytest.mark.parametrize("shape", [lambda r: r, ConfluentMessage],
                         ids=["aiokafka", "confluent"])
def test_bad_records_are_quarantined_and_the_stream_goes_on(shape: Any) -> None:
    sink = ListSink()
    guard = DecodeGuard(Codec(), sink, max_bytes=4096)
    stream: list[tuple[str, bytes | None]] = []
    for i, (kind, raw) in enumerate(BAD.items()):
        stream.append(("good", good(i + 1)))
        stream.append((kind, raw))
    stream.append(("TruncatedError", None))  # a tombstone is no event either
    accepted = []
    for offset, (_, raw) in enumerate(stream):
        rec = AioRecord("t.triggers", 3, 100 + offset, b"k%d" % offset, raw,
                        (("traceparent", b"00-abc-01"),))
        result = guard.decode(shape(rec))
        if result is not None:
            accepted.append((offset, result))
    assert [o for o, _ in accepted] == [0, 2, 4, 6, 8]
    assert all(r.name == "NodeSucceeded" and r.event is not None for _, r in accepted)
    assert len(sink.sent) == 6
    bad = [(o, kind, raw) for o, (kind, raw) in enumerate(stream) if kind != "good"]
    for (key, value), (offset, kind, raw) in zip(sink.sent, bad, strict=True):
        q = to_model("EventQuarantined", Codec().decode(value).record)
        assert isinstance(q, EventQuarantined)
        assert q.error_type == kind
        assert q.reason
        assert (q.source_topic, q.source_partition, q.source_offset) == ("t.triggers", 3,
                                                                         100 + offset)
        assert q.raw == (raw or b"")
        assert key == b"k%d" % offset
        assert base64.b64decode(q.headers["traceparent"]) == b"00-abc-01"
    assert guard.stats["accepted"] == 5
    assert guard.stats["quarantined:OversizedError"] == 1
    guard.flush()
    assert sink.flushed == 1


def test_the_reason_says_what_was_wrong() -> None:
    sink = ListSink()
    guard = DecodeGuard(Codec(), sink, max_bytes=4096)
    for raw in BAD.values():
        guard.decode(AioRecord("t", 0, 0, None, raw))
    reasons = [Codec().decode(v).record["reason"] for _, v in sink.sent]
    assert "unknown schema fingerprint 0001020304050607" in reasons[0]
    assert "ends early" in reasons[1] or "shorter" in reasons[1]
    assert "neither c301" in reasons[2]
    assert "exceeds the limit 4096" in reasons[3]
    assert "output" in reasons[4] and "JSON" in reasons[4]


def test_without_validation_the_guard_still_decodes() -> None:
    guard = DecodeGuard(Codec(), ListSink(), validate=False)
    result = guard.decode(AioRecord("t", 0, 0, None, bad_json()))
    assert result is not None and result.event is None
