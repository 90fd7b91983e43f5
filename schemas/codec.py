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

Bodies are written and read by functions compiled from each kept schema (see "the
compiled path" below), which produce exactly fastavro's bytes and records; fastavro
handles whatever they decline (unusual value types, resolution between versions, errors).
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
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


_new = object.__new__
_slot = vars(Decoded)  # the slot descriptors
_set_name, _set_record = _slot["name"].__set__, _slot["record"].__set__
_set_version, _set_claim = _slot["writer_version"].__set__, _slot["claim_uri"].__set__


def _decoded(name: str, record: dict[str, Any], version: int) -> Decoded:
    """``Decoded(name, record, version)`` in half the time: a frozen dataclass's __init__
    sets each field through ``object.__setattr__``; this sets the slots directly."""
    out = _new(Decoded)
    _set_name(out, name)
    _set_record(out, record)
    _set_version(out, version)
    _set_claim(out, None)
    return out


@dataclass(slots=True)
class _Reader:
    writer: Any
    reader: Any  # None when the writer is the newest version (no resolution needed)
    name: str
    version: int
    uncompiled: SchemaVersion | None = None  # compiled on first use (then None)
    fast: Any = None  # the compiled reader (only when no resolution is needed)


class Codec:
    """Encodes dicts shaped like the Avro records; decodes bytes back to such dicts.

    ``claim_store`` and ``claim_threshold``: encoded events larger than the threshold are
    written to the store and replaced by a ``ClaimCheck`` record. ``max_bytes``: decode
    refuses larger records (``OversizedError``) before reading them. ``reader_versions``
    pins the schema version records of a name are read into (default: the newest), for
    tools built against an older version. ``compiled=False``: fastavro only (the compiled
    path off; benchmarks and tests compare the two).
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
        compiled: bool = True,
    ) -> None:
        self.catalog = catalog or default_catalog()
        self.compiled = compiled
        self.reader_versions = reader_versions or {}
        self.registry = registry
        self.claim_store = claim_store
        self.claim_threshold = claim_threshold
        self.max_bytes = max_bytes
        self._writers: dict[str, tuple[bytes, Any, Any]] = {}
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

    def _writer(self, name: str) -> tuple[bytes, Any, Any]:
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
            fast = compiled_schema(version) if self.compiled else None
            cached = self._writers[name] = (
                header, version.parsed, fast.write if fast is not None else None
            )
        return cached

    def encode(self, name: str, record: dict[str, Any]) -> bytes:
        """Encode ``record`` with the newest schema of ``name`` (claim check if too big)."""
        header, parsed, fast = self._writer(name)
        if name == BATCH_NAME:
            record = {
                **record,
                "events": [(f"{NAMESPACE}.{e['event_type']}", e) for e in record["events"]],
            }
        data = self._write_fast(fast, header, record) if fast is not None else None
        if data is None:
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

    @staticmethod
    def _write_fast(write: Any, header: bytes, record: dict[str, Any]) -> bytes | None:
        """The compiled writer's bytes, or None when it declines (fastavro then decides)."""
        buf = bytearray(header)
        try:
            write(buf, record)
        except Exception:
            return None
        return bytes(buf)

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
        uncompiled = version if reader is None and self.compiled else None
        return _Reader(version.parsed, reader, version.name, version.version, uncompiled)

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
        if reader.uncompiled is not None:
            fast = compiled_schema(reader.uncompiled)
            reader.fast = fast.read if fast is not None else None
            reader.uncompiled = None
        if reader.fast is not None and data.__class__ is bytes:
            try:
                record, end = reader.fast(data, offset)
            except Exception:
                end = -1  # corrupt or unusual: fastavro reads it or says what is wrong
            if end == len(data):
                return _decoded(reader.name, record, reader.version)
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


# --- the compiled path ---------------------------------------------------------------------
#
# fastavro interprets the parsed schema for every value; for `ExecutionEventBatch` (an array
# over a 30-branch union of records with nullable fields) that cost 20-35 µs a batch. Below,
# each kept schema is compiled once, from the schema itself, into Python functions that
# write and read exactly what fastavro writes and reads (Avro binary: zigzag varints,
# length-prefixed strings, union index varints, arrays and maps as one counted block and a
# zero). The compiled functions only take values of the exact types a valid record holds;
# on anything else (a missing field, an int where a double goes, a bool where a long goes, a
# corrupt body) they raise, and the codec hands the record to fastavro, which then writes the
# bytes or raises the error it always did. tests/unit/schemas/test_compiled.py proves
# both paths produce the same bytes and records.

class _Decline(Exception):
    """The compiled path does not take this value; fastavro decides."""


class _Unsupported(Exception):
    """The schema uses something the compiler does not handle; use fastavro for it."""


_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def _varint_loop(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Varints 14 bits at a time: _V1[n] is the varint of n < 2**14, _V2[n] the same 14 bits as
# two bytes with their continuation bits set. A timestamp (8 bytes) takes 4 look-ups, not 8
# loop turns. ~1.4 MB and ~12 ms, so made by the first compile, not at import.
_V1: tuple[bytes, ...] = ()
_V2: tuple[bytes, ...] = ()


@cache
def _make_tables() -> None:
    global _V1, _V2
    _V1 = tuple(_varint_loop(i) for i in range(1 << 14))
    _V2 = tuple(bytes(((i & 0x7F) | 0x80, (i >> 7) | 0x80)) for i in range(1 << 14))


def _varint(n: int) -> bytes:
    """The varint of ``n >= 0``."""
    if n < 1 << 14:
        return _V1[n]
    if n < 1 << 28:
        return _V2[n & 0x3FFF] + _V1[n >> 14]
    if n < 1 << 42:
        return _V2[n & 0x3FFF] + _V2[n >> 14 & 0x3FFF] + _V1[n >> 28]
    if n < 1 << 56:
        return _V2[n & 0x3FFF] + _V2[n >> 14 & 0x3FFF] + _V2[n >> 28 & 0x3FFF] + _V1[n >> 42]
    return _varint_loop(n)


def _long(v: Any) -> bytes:
    if v.__class__ is not int or not _LONG_MIN <= v <= _LONG_MAX:
        raise _Decline
    return _varint((v << 1) ^ (v >> 63))


def _int(v: Any) -> bytes:
    if v.__class__ is not int or not _INT_MIN <= v <= _INT_MAX:
        raise _Decline
    return _varint((v << 1) ^ (v >> 63))


def _size(n: int) -> bytes:
    return _varint(n << 1)


_NOTHING = object()
_last_micros: tuple[Any, bytes] = (_NOTHING, b"")
_last_time: tuple[bytes, datetime] = (b"\x00", _EPOCH)  # a varint and what it reads as


def _micros(v: Any) -> bytes:
    """timestamp-micros as fastavro writes it: aware datetimes from the epoch, ints as-is.

    The events of one decision share one ``now``: the last datetime's varint is kept.
    """
    global _last_micros
    last = _last_micros
    if v is last[0]:
        return last[1]
    if v.__class__ is datetime and v.tzinfo is not None:
        d = v - _EPOCH
        out = _long((d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds)
    else:
        out = _long(v)
    _last_micros = (v, out)
    return out


def _read_time(data: bytes, pos: int) -> tuple[datetime, int]:
    """timestamp-micros as fastavro reads it; the last varint read is kept, as in ``_micros``
    (a whole varint: if the bytes at ``pos`` start with it, they hold the same one)."""
    global _last_time
    raw, t = _last_time
    if data.startswith(raw, pos):
        return t, pos + len(raw)
    raw = data[pos:pos + 8]
    x = int.from_bytes(raw, "little")
    if x & 0x8080808080808080 == 0x0080808080808080 and len(raw) == 8:
        # an 8-byte varint (every timestamp from Dec 1978 to 3111): squeeze out the
        # continuation bits in three steps (7+7 bits, then 14+14, then 28+28)
        x = (x & 0x007F007F007F007F) | (x >> 1 & 0x3F803F803F803F80)
        x = (x & 0x00003FFF00003FFF) | (x >> 2 & 0x0FFFC0000FFFC000)
        x = (x & 0x000000000FFFFFFF) | (x >> 4 & 0x00FFFFFFF0000000)
        t = _EPOCH + timedelta(0, 0, (x >> 1) ^ -(x & 1))
        end = pos + 8
    else:
        us, end = _read_long(data, pos)
        t = _EPOCH + timedelta(0, 0, us)
        raw = data[pos:end]
    _last_time = (raw, t)
    return t, end


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    b = data[pos]
    n = b & 0x7F
    shift = 7
    pos += 1
    while b & 0x80:
        if shift > 63:
            raise _Decline
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    if n >> 64:
        raise _Decline  # more than 64 bits: corrupt (fastavro says how)
    return (n >> 1) ^ -(n & 1), pos


def _read_size(data: bytes, pos: int) -> tuple[int, int]:
    n, pos = _read_long(data, pos)
    if n < 0:
        raise _Decline
    return n, pos


def _read_span(data: bytes, pos: int) -> tuple[int, int]:
    """A string or bytes of 64+ bytes at ``pos``: (its start - 1, its end)."""
    n, pos = _read_size(data, pos)
    return pos - 1, pos + n


@dataclass(frozen=True, slots=True)
class _Compiled:
    """The compiled writer and reader of one schema."""

    write: Any  # write(buf: bytearray, record: dict) -> None
    read: Any  # read(data: bytes, pos: int) -> (record, end)
    source: str = field(repr=False)



_MICROS = "timestamp-micros"


def _unwrap_primitive(t: Any) -> Any:
    """A primitive in its dict form as its name; timestamp-micros as `_MICROS`. Any other
    logical type is not compiled (the schema stays on fastavro)."""
    if isinstance(t, dict) and t.get("type") in _PRIMITIVES:
        logical = t.get("logicalType")
        if logical is None:
            return t["type"]
        if logical == _MICROS and t["type"] == "long":
            return _MICROS
        raise _Unsupported(f"logical type {logical}")
    return t

class _Compiler:
    """Generates the Python source of one schema's writer and reader functions."""

    def __init__(self) -> None:
        self.env: dict[str, Any] = {
            "_Decline": _Decline, "_long": _long, "_int": _int, "_size": _size,
            "_micros": _micros, "_read_long": _read_long, "_read_size": _read_size,
            "_read_span": _read_span,
            "_V1": _V1, "_read_time": _read_time,
            "_pack_f": struct.Struct("<f").pack, "_pack_d": struct.Struct("<d").pack,
            "_unpack_f": struct.Struct("<f").unpack_from,
            "_unpack_d": struct.Struct("<d").unpack_from,
        }
        self.named: dict[str, tuple[dict[str, Any], str]] = {}  # full name -> (def, namespace)
        self.functions: dict[str, tuple[str, str]] = {}  # record full name -> (writer, reader)
        self.chunks: list[str] = []  # function definitions
        self.tables: list[str] = []  # union dispatch tables (naming the functions)
        self.count = 0

    def tmp(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, value: Any) -> str:
        name = self.tmp("_k")
        self.env[name] = value
        return name

    @staticmethod
    def _full(name: str, namespace: str) -> str:
        return name if "." in name or not namespace else f"{namespace}.{name}"

    def resolve(self, t: Any, ns: str) -> tuple[Any, str]:
        """A type with references replaced by their definition (and its namespace)."""
        if isinstance(t, str) and t not in _PRIMITIVES:
            full = t if t in self.named else self._full(t, ns)
            if full not in self.named:
                raise _Unsupported(f"unknown type {t!r}")
            return self.named[full]
        if isinstance(t, dict) and t.get("type") in ("record", "enum", "fixed"):
            full = self._full(t["name"], t.get("namespace", ns))
            inner = full.rpartition(".")[0]
            self.named.setdefault(full, (t, inner))
            return t, inner
        return t, ns

    # --- writing: lines appending the encoding of variable `v` to `buf` ---------------------

    def write(self, t: Any, v: str, ind: str, ns: str, out: list[str],
              branch: bool = False) -> None:
        """``branch``: ``v`` is the non-null branch of a union (fastavro checks its type)."""
        t, ns = self.resolve(t, ns)
        t = _unwrap_primitive(t)
        if t == _MICROS:
            out.append(f"{ind}buf += _micros({v})")
            return
        if isinstance(t, str):
            if t == "null":
                out.append(f"{ind}if {v} is not None: raise _Decline")
            elif t == "boolean":
                out += [f"{ind}if {v} is True: buf += b'\\x01'",
                        f"{ind}elif {v} is False: buf += b'\\x00'",
                        f"{ind}else: raise _Decline"]
            elif t in ("int", "long"):
                out.append(f"{ind}buf += _V1[{v} << 1] if {v}.__class__ is int "
                           f"and 0 <= {v} < 8192 else _{t}({v})")
            elif t in ("float", "double"):
                out += [f"{ind}if {v}.__class__ is not float: raise _Decline",
                        f"{ind}buf += _pack_{t[0]}({v})"]
            elif t == "string":  # fastavro calls .encode() too, and checks str in unions
                s, n = self.tmp("s"), self.tmp("n")
                if branch:
                    out.append(f"{ind}if {v}.__class__ is not str: raise _Decline")
                out += [f"{ind}{s} = {v}.encode()",
                        f"{ind}{n} = len({s})",
                        f"{ind}buf += _V1[{n} << 1] if {n} < 8192 else _size({n})",
                        f"{ind}buf += {s}"]
            else:  # bytes
                n = self.tmp("n")
                out += [f"{ind}if {v}.__class__ is not bytes: raise _Decline",
                        f"{ind}{n} = len({v})",
                        f"{ind}buf += _V1[{n} << 1] if {n} < 8192 else _size({n})",
                        f"{ind}buf += {v}"]
        elif isinstance(t, list):
            self.write_union(t, v, ind, ns, out)
        elif t["type"] == "record":
            out.append(f"{ind}{self.record(t, ns)[0]}(buf, {v})")
        elif t["type"] == "enum":
            table = self.const({s: _size(i) for i, s in enumerate(t["symbols"])})
            out.append(f"{ind}buf += {table}[{v}]")
        elif t["type"] in ("array", "map"):
            kind = "list" if t["type"] == "array" else "dict"
            out += [f"{ind}if {v}.__class__ is not {kind}: raise _Decline",
                    f"{ind}if {v}:",
                    f"{ind}    buf += _size(len({v}))"]
            if kind == "list":
                item = self.tmp("i")
                out.append(f"{ind}    for {item} in {v}:")
                self.write(t["items"], item, ind + "        ", ns, out)
            else:
                key, item = self.tmp("k"), self.tmp("i")
                out.append(f"{ind}    for {key}, {item} in {v}.items():")
                self.write("string", key, ind + "        ", ns, out)
                self.write(t["values"], item, ind + "        ", ns, out)
            out.append(f"{ind}buf += b'\\x00'")
        else:
            raise _Unsupported(f"type {t['type']}")

    def write_union(self, branches: list[Any], v: str, ind: str, ns: str,
                    out: list[str]) -> None:
        resolved = [self.resolve(b, ns) for b in branches]
        if len(branches) == 2 and "null" in branches:
            null = branches.index("null")
            other, other_ns = resolved[1 - null]
            out += [f"{ind}if {v} is None: buf += {_size(null)!r}",
                    f"{ind}else:",
                    f"{ind}    buf += {_size(1 - null)!r}"]
            self.write(other, v, ind + "    ", other_ns, out, branch=True)
        elif all(isinstance(b, dict) and b.get("type") == "record" for b, _ in resolved):
            # tuple notation (full name, record), as the codec passes the batch's events
            entries = ", ".join(
                f"{self._full(b['name'], b.get('namespace', bns))!r}: "
                f"({_size(i)!r}, {self.record(b, bns)[0]})"
                for i, (b, bns) in enumerate(resolved)
            )
            table = self.tmp("_t")
            self.tables.append(f"{table} = {{{entries}}}")
            name, rec, idx, fn = self.tmp("n"), self.tmp("r"), self.tmp("x"), self.tmp("f")
            out += [f"{ind}if {v}.__class__ is not tuple: raise _Decline",
                    f"{ind}{name}, {rec} = {v}",
                    f"{ind}{idx}, {fn} = {table}[{name}]",
                    f"{ind}buf += {idx}",
                    f"{ind}{fn}(buf, {rec})"]
        else:
            raise _Unsupported("union other than [null, X] or of records")

    # --- reading: lines setting variable `v` from `data` at `pos` ---------------------------

    def read_long(self, v: str, ind: str, out: list[str], size: bool = False) -> None:
        """``size``: a length or index (one byte, even: under 64; else read, must be >= 0)."""
        if size:
            out += [f"{ind}b = data[pos]",
                    f"{ind}if b & 0x81:",
                    f"{ind}    {v}, pos = _read_size(data, pos)",
                    f"{ind}else:",
                    f"{ind}    {v} = b >> 1",
                    f"{ind}    pos += 1"]
        else:
            out += [f"{ind}b = data[pos]",
                    f"{ind}if b < 128:",
                    f"{ind}    {v} = (b >> 1) ^ -(b & 1)",
                    f"{ind}    pos += 1",
                    f"{ind}else:",
                    f"{ind}    {v}, pos = _read_long(data, pos)"]

    def read(self, t: Any, v: str, ind: str, ns: str, out: list[str]) -> None:
        t, ns = self.resolve(t, ns)
        t = _unwrap_primitive(t)
        if t == _MICROS:
            out.append(f"{ind}{v}, pos = _read_time(data, pos)")
            return
        if isinstance(t, str):
            if t == "null":
                out.append(f"{ind}{v} = None")
            elif t == "boolean":
                out += [f"{ind}b = data[pos]",
                        f"{ind}if b > 1: raise _Decline",
                        f"{ind}{v} = b == 1",
                        f"{ind}pos += 1"]
            elif t in ("int", "long"):
                self.read_long(v, ind, out)
            elif t in ("float", "double"):
                out += [f"{ind}{v} = _unpack_{t[0]}(data, pos)[0]",
                        f"{ind}pos += {4 if t == 'float' else 8}"]
            else:  # string, bytes: the body is data[pos + 1:e]
                e = self.tmp("e")
                decode = ".decode()" if t == "string" else ""
                out += [f"{ind}{e} = data[pos]",
                        f"{ind}if {e} & 0x81:",
                        f"{ind}    pos, {e} = _read_span(data, pos)",
                        f"{ind}else:",
                        f"{ind}    {e} = pos + 1 + ({e} >> 1)",
                        f"{ind}{v} = data[pos + 1:{e}]{decode}",
                        f"{ind}pos = {e}"]
        elif isinstance(t, list):
            self.read_union(t, v, ind, ns, out)
        elif t["type"] == "record":
            out.append(f"{ind}{v}, pos = {self.record(t, ns)[1]}(data, pos)")
        elif t["type"] == "enum":
            symbols, i = self.const(tuple(t["symbols"])), self.tmp("e")
            self.read_long(i, ind, out, size=True)
            out.append(f"{ind}{v} = {symbols}[{i}]")
        elif t["type"] in ("array", "map"):
            n, item = self.tmp("n"), self.tmp("i")
            out.append(f"{ind}{v} = {'[]' if t['type'] == 'array' else '{}'}")
            self.read_long(n, ind, out)
            out += [f"{ind}while {n}:",
                    f"{ind}    if {n} < 0:",
                    f"{ind}        {n} = -{n}",
                    f"{ind}        _, pos = _read_long(data, pos)",
                    f"{ind}    for _ in range({n}):"]
            inner = ind + "        "
            if t["type"] == "array":
                self.read(t["items"], item, inner, ns, out)
                out.append(f"{inner}{v}.append({item})")
            else:
                key = self.tmp("k")
                self.read("string", key, inner, ns, out)
                self.read(t["values"], item, inner, ns, out)
                out.append(f"{inner}{v}[{key}] = {item}")
            self.read_long(n, ind + "    ", out)
        else:
            raise _Unsupported(f"type {t['type']}")

    def read_union(self, branches: list[Any], v: str, ind: str, ns: str,
                   out: list[str]) -> None:
        resolved = [self.resolve(b, ns) for b in branches]
        if len(branches) == 2 and "null" in branches:
            null = branches.index("null")
            other, other_ns = resolved[1 - null]
            out += [f"{ind}b = data[pos]",  # the index is one byte: 0 or 2
                    f"{ind}pos += 1",
                    f"{ind}if b == {2 * null}:",
                    f"{ind}    {v} = None",
                    f"{ind}elif b == {2 * (1 - null)}:"]
            self.read(other, v, ind + "    ", other_ns, out)
            out.append(f"{ind}else: raise _Decline")
            return
        i = self.tmp("u")
        self.read_long(i, ind, out, size=True)
        if all(isinstance(b, dict) and b.get("type") == "record" for b, _ in resolved):
            table = self.tmp("_t")
            readers = ", ".join(self.record(b, bns)[1] for b, bns in resolved)
            self.tables.append(f"{table} = ({readers},)")
            out.append(f"{ind}{v}, pos = {table}[{i}](data, pos)")
        else:
            raise _Unsupported("union other than [null, X] or of records")

    # --- records: one writer and one reader function each -----------------------------------

    def record(self, t: dict[str, Any], ns: str) -> tuple[str, str]:
        full = self._full(t["name"], t.get("namespace", ns))
        names = self.functions.get(full)
        if names is not None:
            return names
        names = self.functions[full] = (self.tmp("_write_"), self.tmp("_read_"))
        own_ns = full.rpartition(".")[0]
        w = [f"def {names[0]}(buf, d):"]
        r = [f"def {names[1]}(data, pos):"]
        values = []
        for f in t["fields"]:
            v = self.tmp("v")
            ftype = f["type"]
            if "default" in f:
                w.append(f"    {v} = d.get({f['name']!r}, {self.const(f['default'])})")
            elif ftype == "null" or (isinstance(ftype, list) and "null" in ftype):
                w.append(f"    {v} = d.get({f['name']!r})")
            else:
                w.append(f"    {v} = d[{f['name']!r}]")
            self.write(ftype, v, "    ", own_ns, w)
            self.read(ftype, v, "    ", own_ns, r)
            values.append(f"{f['name']!r}: {v}")
        w.append("    return None")
        r.append(f"    return {{{', '.join(values)}}}, pos")
        self.chunks += ["\n".join(w), "\n".join(r)]
        return names


@cache
def _compile(schema_json: str) -> _Compiled | None:
    """The compiled writer and reader of a record schema (None: fastavro handles it)."""
    schema = json.loads(schema_json)
    _make_tables()
    compiler = _Compiler()
    try:
        if not isinstance(schema, dict) or schema.get("type") != "record":
            raise _Unsupported("not a record")
        write, read = compiler.record(schema, "")
    except _Unsupported:
        return None
    source = "\n\n".join(compiler.chunks) + "\n\n" + "\n".join(compiler.tables) + "\n"
    exec(compile(source, f"<flowlog.schemas.codec {schema.get('name')}>", "exec"), compiler.env)
    return _Compiled(compiler.env[write], compiler.env[read], source)


def compiled_schema(version: SchemaVersion) -> _Compiled | None:
    """The compiled path of one kept schema version (compiled once per process)."""
    return _compile(json.dumps(version.schema, sort_keys=True))
