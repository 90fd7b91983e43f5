"""The decode guard every consumer uses: decode, validate, or quarantine and move on.

    guard = DecodeGuard.from_settings(settings)
    for msg in consumer:                      # confluent-kafka, aiokafka or Faust records
        event = guard.decode(msg)
        if event is None:
            continue                          # quarantined with its reason; never raises
        handle(event)
    guard.flush()                             # before committing offsets

A record that cannot be decoded (bad magic byte, truncated, unknown fingerprint,
oversized, broken claim check) or validated (the contract's rules) is written to the
quarantine topic as ``EventQuarantined``: reason, error type, source topic, partition
and offset, the raw bytes and headers, keyed by the original key. Nothing is dropped
silently: if the quarantine itself cannot be written, ``flush`` raises and the consumer
must not commit.
"""

from __future__ import annotations

import base64
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from flowlog.schemas.codec import Codec, Decoded
from flowlog.schemas.errors import ContractError, PublishError
from flowlog.schemas.events import ExecutionEventBatch, to_model
from flowlog.schemas.ids import new_event_id
from flowlog.schemas.model import Event
from flowlog.schemas.sdk import PRODUCER_DEFAULTS
from flowlog.schemas.topics import TopicCatalog

if TYPE_CHECKING:
    from flowlog.settings import Settings

log = logging.getLogger(__name__)


class QuarantineSink(Protocol):
    def send(self, key: bytes | None, value: bytes) -> None: ...
    def flush(self, timeout: float = 30.0) -> None: ...


class KafkaQuarantine:
    """Writes quarantine records to the quarantine topic (idempotent producer, acks=all)."""

    def __init__(self, bootstrap_servers: str, topic: str,
                 config: dict[str, Any] | None = None) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self._errors: list[str] = []
        self._producer = Producer({
            **PRODUCER_DEFAULTS,
            "message.max.bytes": 16 * 1024 * 1024,
            **(config or {}),
            "bootstrap.servers": bootstrap_servers,
        })

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(err.str())

    def send(self, key: bytes | None, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(self.topic, value, key, on_delivery=self._delivered)
                self._producer.poll(0)
                return
            except BufferError:
                self._producer.poll(0.1)

    def flush(self, timeout: float = 30.0) -> None:
        left = self._producer.flush(timeout)
        if left or self._errors:
            errors, self._errors = self._errors, []
            raise PublishError(
                f"quarantine to {self.topic} failed ({left} undelivered, errors {errors}); "
                "do not commit the consumer's offsets", True)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A record the guard let through: the decoded dict and, if validated, the typed event."""

    name: str
    record: dict[str, Any]
    event: Event | ExecutionEventBatch | None
    writer_version: int


def _field(msg: Any, name: str) -> Any:
    value = getattr(msg, name, None)
    return value() if callable(value) else value


def _headers(raw: Any) -> dict[str, str]:
    out = {}
    for k, v in raw or ():
        key = k.decode(errors="replace") if isinstance(k, bytes) else str(k)
        out[key] = base64.b64encode(v or b"").decode()
    return out


class DecodeGuard:
    """Decodes consumer records; quarantines the ones that are not valid events."""

    def __init__(self, codec: Codec, sink: QuarantineSink, *, validate: bool = True,
                 max_bytes: int | None = None) -> None:
        self.codec = codec
        self.sink = sink
        self.validate = validate
        self.max_bytes = max_bytes
        self.stats: Counter[str] = Counter()

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> DecodeGuard:
        """A guard writing to the settings' quarantine topic; records over 4x the claim-check
        threshold are refused (anything that large should have gone out of line)."""
        topic = TopicCatalog.from_settings(settings).name("quarantine")
        kwargs.setdefault("max_bytes", 4 * settings.claim_check_threshold_bytes)
        return cls(Codec.from_settings(settings),
                   KafkaQuarantine(settings.bootstrap_servers, topic), **kwargs)

    def decode(self, msg: Any) -> Accepted | None:
        """The record's event, or ``None`` after quarantining it. Never raises for bad input."""
        value = _field(msg, "value")
        raw = bytes(value) if value is not None else b""
        try:
            if self.max_bytes is not None and len(raw) > self.max_bytes:
                from flowlog.schemas.errors import OversizedError

                raise OversizedError(
                    f"record of {len(raw)} bytes exceeds the limit {self.max_bytes}")
            decoded: Decoded = self.codec.decode(raw)
            event = to_model(decoded.name, decoded.record) if self.validate else None
        except ContractError as exc:
            self._quarantine(msg, raw, exc)
            return None
        except Exception as exc:  # a bug must not stop the consumer either; keep the record
            log.exception("unexpected error decoding a record")
            self._quarantine(msg, raw, exc)
            return None
        self.stats["accepted"] += 1
        return Accepted(decoded.name, decoded.record, event, decoded.writer_version)

    def quarantine(self, msg: Any, exc: Exception) -> None:
        """Quarantine a record that decoded but could not be handled (with `exc` as the
        reason); call `flush` before committing its offset."""
        value = _field(msg, "value")
        self._quarantine(msg, bytes(value) if value is not None else b"", exc)

    def _quarantine(self, msg: Any, raw: bytes, exc: Exception) -> None:
        now = datetime.now(UTC)
        topic = str(_field(msg, "topic"))
        partition = int(_field(msg, "partition") or 0)
        offset = int(_field(msg, "offset") or 0)
        record = {
            "event_id": new_event_id(),
            "event_type": "EventQuarantined",
            "occurred_at": now,
            "execution_id": None,
            "workflow_id": None,
            "workflow_version": None,
            "seq": None,
            "correlation_id": None,
            "causation_id": None,
            "tenant": "default",
            "reason": str(exc) or type(exc).__name__,
            "error_type": type(exc).__name__,
            "source_topic": topic,
            "source_partition": partition,
            "source_offset": offset,
            "raw": raw,
            "headers": _headers(_field(msg, "headers")),
            "quarantined_at": now,
        }
        key = _field(msg, "key")
        self.sink.send(bytes(key) if key is not None else None,
                       self.codec.encode("EventQuarantined", record))
        self.stats[f"quarantined:{type(exc).__name__}"] += 1
        log.warning("quarantined %s[%s]@%s: %s: %s", topic, partition, offset,
                    type(exc).__name__, exc)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every quarantine record is stored; call before committing offsets."""
        self.sink.flush(timeout)
