"""Avro schemas generated from the event types; the drift check between the two.

The ``.avsc`` files in ``avro/`` are the released contract. This module derives the
schema an event type *implies* so that tests and ``flowlog schemas check`` can prove the
type and its newest ``.avsc`` agree, and ``flowlog schemas generate`` can write the next
version when a type changes.
"""

from __future__ import annotations

import types
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from flowlog.schemas.model import NAMESPACE, AvroInt, AvroJson, Event
from pydantic import AwareDatetime, BaseModel

TIMESTAMP = {"type": "long", "logicalType": "timestamp-micros"}
BATCH_NAME = "ExecutionEventBatch"
CLAIM_CHECK_NAME = "ClaimCheck"


class _Namer:
    """Writes a named type in full the first time, by name afterwards (Avro rule)."""

    def __init__(self) -> None:
        self.defined: set[str] = set()

    def first(self, name: str) -> bool:
        if name in self.defined:
            return False
        self.defined.add(name)
        return True


def _type(ann: Any, namer: _Namer) -> Any:
    origin = get_origin(ann)
    if origin is Annotated:
        base, *meta = get_args(ann)
        if any(isinstance(m, AvroJson) for m in meta):
            return "string"
        if any(isinstance(m, AvroInt) for m in meta):
            return "int"
        return _type(base, namer)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(ann) if a is not type(None)]
        if len(args) != len(get_args(ann)) - 1 or len(args) != 1:
            raise TypeError(f"only `X | None` unions are supported, got {ann}")
        return ["null", _type(args[0], namer)]
    if origin is Literal:
        return "string"
    if origin is list:
        return {"type": "array", "items": _type(get_args(ann)[0], namer)}
    if origin is dict:
        key, value = get_args(ann)
        if key is not str:
            raise TypeError("Avro maps have string keys")
        return {"type": "map", "values": _type(value, namer)}
    if ann is AwareDatetime:
        return dict(TIMESTAMP)
    if isinstance(ann, type):
        if issubclass(ann, Enum):
            if not namer.first(ann.__name__):
                return f"{NAMESPACE}.{ann.__name__}"
            return {
                "type": "enum",
                "name": ann.__name__,
                "namespace": NAMESPACE,
                "symbols": [m.value for m in ann],
            }
        if issubclass(ann, BaseModel):
            return record_schema(ann, namer)
        simple = {str: "string", bool: "boolean", int: "long", float: "double", bytes: "bytes"}
        if ann in simple:
            return simple[ann]
        if issubclass(ann, datetime):
            return dict(TIMESTAMP)
    raise TypeError(f"no Avro type for {ann!r}")


def _default(model: type[BaseModel], name: str) -> tuple[bool, Any]:
    info = model.model_fields[name]
    if name == "event_type" or info.is_required():
        return False, None
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        if value == [] or value == {}:
            return True, value
        return False, None  # a computed default (ids, clocks) has no Avro default
    value = info.default
    if isinstance(value, Enum):
        value = value.value
    return True, value


def record_schema(model: type[BaseModel], namer: _Namer | None = None) -> Any:
    """The Avro record schema a pydantic model implies (or its name if already defined)."""
    namer = namer or _Namer()
    name = model.__name__
    if not namer.first(name):
        return f"{NAMESPACE}.{name}"
    fields = []
    for fname, info in model.model_fields.items():
        ann: Any = info.annotation
        if info.metadata:
            ann = Annotated[(ann, *info.metadata)]
        field: dict[str, Any] = {"name": fname, "type": _type(ann, namer)}
        has_default, value = _default(model, fname)
        if has_default:
            field["default"] = value
        fields.append(field)
    out: dict[str, Any] = {"type": "record", "name": name, "namespace": NAMESPACE}
    if model.__doc__ and issubclass(model, Event) and model.__doc__ is not Event.__doc__:
        out["doc"] = " ".join(model.__doc__.split())
    out["fields"] = fields
    return out


def batch_schema(execution_types: tuple[type[Event], ...]) -> dict[str, Any]:
    """``ExecutionEventBatch``: the events of one orchestrator decision in one record."""
    namer = _Namer()
    union = [record_schema(cls, namer) for cls in execution_types]
    return {
        "type": "record",
        "name": BATCH_NAME,
        "namespace": NAMESPACE,
        "doc": "The events of one decision, written as one Kafka record (all or nothing).",
        "fields": [
            {"name": "execution_id", "type": "string"},
            {"name": "first_seq", "type": "long"},
            {"name": "last_seq", "type": "long"},
            {"name": "causation_id", "type": ["null", "string"], "default": None},
            {"name": "events", "type": {"type": "array", "items": union}},
        ],
    }


def claim_check_schema() -> dict[str, Any]:
    """``ClaimCheck``: stands in for an event whose encoded body went to the blob store."""
    return {
        "type": "record",
        "name": CLAIM_CHECK_NAME,
        "namespace": NAMESPACE,
        "doc": "An event stored out of line; `body` is the full single-object encoding.",
        "fields": [
            {"name": "event_type", "type": "string"},
            {"name": "uri", "type": "string"},
            {"name": "sha256", "type": "string"},
            {"name": "size", "type": "long"},
        ],
    }


def strip_docs(schema: Any) -> Any:
    """The schema without ``doc`` keys (docs do not change the contract)."""
    if isinstance(schema, dict):
        return {k: strip_docs(v) for k, v in schema.items() if k != "doc"}
    if isinstance(schema, list):
        return [strip_docs(v) for v in schema]
    return schema


def expected_schemas() -> dict[str, dict[str, Any]]:
    """Every schema the Python types imply, by name (events, batch, claim check)."""
    from flowlog.schemas.events import EVENT_TYPES, EXECUTION_TYPES

    out = {name: record_schema(cls) for name, cls in EVENT_TYPES.items()}
    out[BATCH_NAME] = batch_schema(EXECUTION_TYPES)
    out[CLAIM_CHECK_NAME] = claim_check_schema()
    return out


def drift(newest: dict[str, dict[str, Any]]) -> list[str]:
    """Differences between the Python types and the newest ``.avsc`` of each name."""
    problems = []
    expected = expected_schemas()
    for name, schema in expected.items():
        kept = newest.get(name)
        if kept is None:
            problems.append(f"{name}: no .avsc kept (run `flowlog schemas generate`)")
        elif strip_docs(kept) != strip_docs(schema):
            problems.append(
                f"{name}: the Python type differs from its newest .avsc "
                f"({_first_difference(strip_docs(kept), strip_docs(schema))}); "
                "run `flowlog schemas generate` to write the next version"
            )
    for name in sorted(set(newest) - set(expected)):
        problems.append(f"{name}: .avsc kept but no Python type (add one to events.py)")
    return problems


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        if a.get("name") and a.get("name") != b.get("name"):
            return f"{path or '/'}: name {a.get('name')} vs {b.get('name')}"
        if "fields" in a and "fields" in b:
            fa = {f["name"]: f for f in a["fields"]}
            fb = {f["name"]: f for f in b["fields"]}
            for n in fa.keys() - fb.keys():
                return f"{path}/{n}: only in the .avsc"
            for n in fb.keys() - fa.keys():
                return f"{path}/{n}: only in the Python type"
            if list(fa) != list(fb):
                return f"{path or '/'}: field order differs"
            for n in fa:
                if fa[n] != fb[n]:
                    return _first_difference(fa[n], fb[n], f"{path}/{n}")
        for k in sorted(a.keys() | b.keys()):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path or '/'}: .avsc has {a!r}, Python type has {b!r}"
