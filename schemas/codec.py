"""Encoding and decoding of events (fastavro, schemaless, on plain dicts).

Framing:
* Avro single-object encoding (default): ``C3 01``, the writer schema's 8-byte
  CRC-64-AVRO fingerprint (little-endian), then the Avro body. No registry needed.
* Confluent wire format (when a schema registry client is given): ``00``, the 4-byte
  big-endian schema id, then the body. Subjects follow the record-name strategy
  (``flowlog.events.<Name>``) because one topic carries several event types.

The decoder reads both framings whatever it writes. Records are written with the newest
kept schema of their name and read into the newest one (Avro resolution from older or
newer writers). Anything that is not a readable event raises a ``DecodeError``.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastavro import schemaless_reader, schemaless_writer
from flowlog.schemas.avrogen import BATCH_NAME, CLAIM_CHECK_NAME
from flowlog.schemas.claimcheck import BlobStore, blob_store_from_settings, sha256_hex
from flowlog.schemas.errors import (
    BadMagicError,
    ClaimCheckError,
    DecodeError,
    EncodeError,
    OversizedError,
    TruncatedError,
    UnknownSchemaError,
)
from flowlog.schemas.model import NAMESPACE
from flowlog.schemas.registry import SchemaCatalog, SchemaVersion, default_catalog, make_version

if TYPE_CHECKING:
    from flowlog.schemas.model import Event

    from flowlog.settings import Settings

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
_HEADER = len(SINGLE_OBJECT_MAGIC) + 8


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded record: its schema name (= event_type), the record, the writer's version."""

    name: str
    record: dict[str, Any]
    writer_version: int
    claim_uri: str | None = None


@dataclass(frozen=True, slots=True)
class _Reader:
    writer: Any
    reader: Any  # None when the writer is the newest version (no resolution needed)
    name: str
    version: int


class Codec:
    """Encodes dicts shaped like the Avro records; decodes bytes back to such dicts.

    ``claim_store`` and ``claim_threshold``: encoded events larger than the threshold are
    written to the store and replaced by a ``ClaimCheck`` record. ``max_bytes``: decode
    refuses larger records (``OversizedError``) before reading them. ``reader_versions``
    pins the schema version records of a name are read into (default: the newest), for
    tools built against an older version.
    """

    def __init__(
        self,
        catalog: SchemaCatalog | None = None,
        *,
        registry: Any = None,
        claim_store: BlobStore | None = None,
        claim_threshold: int | None = None,
        max_bytes: int | None = None,
        reader_versions: dict[str, int] | None = None,
    ) -> None:
        self.catalog = catalog or default_catalog()
        self.reader_versions = reader_versions or {}
        self.registry = registry
        self.claim_store = claim_store
        self.claim_threshold = claim_threshold
        self.max_bytes = max_bytes
        self._writers: dict[str, tuple[bytes, Any]] = {}
        self._readers: dict[bytes, _Reader] = {}
        self._registry_readers: dict[int, _Reader] = {}
        for fp, version in self.catalog.by_fingerprint.items():
            self._readers[fp] = self._reader_for(version)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Codec:
        """The codec the settings describe (registry, blob store, threshold)."""
        registry = None
        if settings.schema_registry_url:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            registry = SchemaRegistryClient({"url": settings.schema_registry_url})
        kwargs: dict[str, Any] = {
            "registry": registry,
            "claim_store": blob_store_from_settings(settings),
            "claim_threshold": settings.claim_check_threshold_bytes,
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    # --- encoding ---------------------------------------------------------------------------

    def _writer(self, name: str) -> tuple[bytes, Any]:
        cached = self._writers.get(name)
        if cached is None:
            try:
                version = self.catalog.newest(name)
            except KeyError as exc:
                raise EncodeError(f"no schema named {name!r}; see docs/events.md") from exc
            if self.registry is not None:
                from confluent_kafka.schema_registry import Schema

                schema_id = self.registry.register_schema(
                    version.full_name, Schema(json.dumps(version.schema), "AVRO")
                )
                header = CONFLUENT_MAGIC + struct.pack(">I", schema_id)
            else:
                header = SINGLE_OBJECT_MAGIC + version.fingerprint
            cached = self._writers[name] = (header, version.parsed)
        return cached

    def encode(self, name: str, record: dict[str, Any]) -> bytes:
        """Encode ``record`` with the newest schema of ``name`` (claim check if too big)."""
        header, parsed = self._writer(name)
        if name == BATCH_NAME:
            record = {
                **record,
                "events": [(f"{NAMESPACE}.{e['event_type']}", e) for e in record["events"]],
            }
        buf = io.BytesIO()
        buf.write(header)
        try:
            schemaless_writer(buf, parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise EncodeError(f"{name}: record does not fit its schema: {exc}") from exc
        data = buf.getvalue()
        if (
            self.claim_store is not None
            and self.claim_threshold is not None
            and name != CLAIM_CHECK_NAME
            and len(data) > self.claim_threshold
        ):
            uri = self.claim_store.put(data)
            claim = {"event_type": name, "uri": uri, "sha256": sha256_hex(data), "size": len(data)}
            return self.encode(CLAIM_CHECK_NAME, claim)
        return data

    def encode_event(self, event: Event) -> bytes:
        """Encode a typed event (or batch) with its newest schema."""
        return self.encode(type(event).__name__, event.to_avro())

    # --- decoding ---------------------------------------------------------------------------

    def _reader_for(self, version: SchemaVersion) -> _Reader:
        target = self.catalog.newest(version.name)
        pinned = self.reader_versions.get(version.name)
        if pinned is not None:
            target = next(v for v in self.catalog.versions[version.name] if v.version == pinned)
        reader = None if target.fingerprint == version.fingerprint else target.parsed
        return _Reader(version.parsed, reader, version.name, version.version)

    def _registry_reader(self, schema_id: int) -> _Reader:
        cached = self._registry_readers.get(schema_id)
        if cached is not None:
            return cached
        if self.registry is None:
            raise UnknownSchemaError(
                f"Confluent framing (schema id {schema_id}) but no schema registry is configured"
            )
        try:
            schema = json.loads(self.registry.get_schema(schema_id).schema_str)
        except Exception as exc:
            raise UnknownSchemaError(f"schema id {schema_id}: {exc}") from exc
        name = str(schema.get("name", "")).rsplit(".", 1)[-1]
        if name not in self.catalog.versions:
            raise UnknownSchemaError(f"schema id {schema_id} is {name!r}, not an event we know")
        version = make_version(name, 0, schema)
        known = self.catalog.by_fingerprint.get(version.fingerprint)
        cached = self._reader_for(known or version)
        self._registry_readers[schema_id] = cached
        return cached

    def decode(self, data: bytes) -> Decoded:
        """Decode one Kafka record value; ``DecodeError`` (with its reason) if it is not one."""
        if self.max_bytes is not None and len(data) > self.max_bytes:
            raise OversizedError(f"record of {len(data)} bytes exceeds the limit {self.max_bytes}")
        decoded = self._decode(data)
        if decoded.name == CLAIM_CHECK_NAME:
            return self._redeem(decoded.record)
        return decoded

    def _decode(self, data: bytes) -> Decoded:
        if data[:2] == SINGLE_OBJECT_MAGIC:
            if len(data) < _HEADER:
                raise TruncatedError(f"{len(data)} bytes: shorter than the 10-byte header")
            fp = data[2:_HEADER]
            reader = self._readers.get(fp)
            if reader is None:
                raise UnknownSchemaError(f"unknown schema fingerprint {fp.hex()}")
            offset = _HEADER
        elif data[:1] == CONFLUENT_MAGIC:
            if len(data) < 5:
                raise TruncatedError(f"{len(data)} bytes: shorter than the 5-byte header")
            reader = self._registry_reader(struct.unpack(">I", data[1:5])[0])
            offset = 5
        elif not data:
            raise TruncatedError("empty record")
        else:
            raise BadMagicError(
                f"first bytes {data[:2].hex()} are neither c301 (Avro single-object) nor 00 "
                "(Confluent)"
            )
        buf = io.BytesIO(data)
        buf.seek(offset)
        try:
            record = schemaless_reader(buf, reader.writer, reader.reader)
        except EOFError as exc:
            raise TruncatedError(f"{reader.name}: body ends early ({exc})") from exc
        except Exception as exc:  # corrupt bodies raise all kinds of errors in fastavro
            raise DecodeError(f"{reader.name}: corrupt body: {type(exc).__name__}: {exc}") from exc
        if buf.tell() != len(data):
            raise DecodeError(
                f"{reader.name}: {len(data) - buf.tell()} bytes left after the body "
                "(wrong schema or corrupt record)"
            )
        return Decoded(reader.name, record, reader.version)  # type: ignore[arg-type]

    def _redeem(self, claim: dict[str, Any]) -> Decoded:
        if self.claim_store is None:
            raise ClaimCheckError(f"claim check {claim['uri']} but no blob store is configured")
        data = self.claim_store.get(claim["uri"])
        if sha256_hex(data) != claim["sha256"] or len(data) != claim["size"]:
            raise ClaimCheckError(f"claim check blob {claim['uri']} does not match its hash")
        inner = self._decode(data)
        if inner.name == CLAIM_CHECK_NAME or inner.name != claim["event_type"]:
            raise ClaimCheckError(f"claim check blob {claim['uri']} holds {inner.name}")
        return Decoded(inner.name, inner.record, inner.writer_version, claim["uri"])

    def decode_event(self, data: bytes) -> Any:
        """Decode and validate into the event's Python type (``EventValidationError``)."""
        from flowlog.schemas.events import to_model

        decoded = self.decode(data)
        return to_model(decoded.name, decoded.record)
