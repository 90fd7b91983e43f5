"""The base of every event type: envelope, Avro markers and dict conversion.

Event types are pydantic models (validation at the SDK boundary); the codec works on
plain dicts shaped like the Avro records (speed). ``to_avro``/``from_avro`` convert
between the two: JSON-valued fields become canonical JSON strings on the way out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Self, get_args, get_origin

import orjson
from flowlog.schemas.domainform import DomainForm
from flowlog.schemas.errors import MISSING, EventValidationError
from flowlog.schemas.ids import new_event_id
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationError,
)


class AvroInt:
    """Marks an ``int`` field as Avro ``int`` (32 bits); plain ints are Avro ``long``."""


class AvroJson:
    """Marks a field as JSON: any JSON value in Python, canonical JSON text in Avro."""


Int32 = Annotated[int, AvroInt(), Field(ge=-(2**31), le=2**31 - 1)]
#: An Avro ``long`` (64 bits); pydantic refuses larger ints before the encoder does.
Long = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
#: A UUID in its canonical text form (lower-case hex, 8-4-4-4-12).
_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
UuidStr = Annotated[str, StringConstraints(pattern=_UUID)]
Json = Annotated[JsonValue, AvroJson()]

#: Avro namespace of every named type of the contract.
NAMESPACE = "flowlog.events"


def canonical_json(value: Any) -> str:
    """Canonical JSON text: sorted keys, no spaces, UTF-8 (what JSON-valued fields carry)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def utcnow() -> datetime:
    return datetime.now(UTC)


def _has_marker(annotation: Any, marker: type) -> bool:
    if get_origin(annotation) is Annotated:
        return any(isinstance(m, marker) for m in get_args(annotation)[1:])
    # `Json | None` is a Union whose member is Annotated
    return any(_has_marker(a, marker) for a in get_args(annotation))


class Record(BaseModel):
    """A nested Avro record (a named type shared by several events)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)


class Event(Record):
    """The envelope of DESIGN.md section 4; every event type extends it.

    ``topic`` is the catalog name (without prefix) the event is published to; ``key_field``
    the field whose value is the Kafka key.
    """

    topic: ClassVar[str] = ""
    key_field: ClassVar[str] = "execution_id"
    _json_fields: ClassVar[tuple[str, ...]] = ()
    #: Fields a validator fills in when absent (reported only if nothing else is wrong).
    derived_fields: ClassVar[tuple[str, ...]] = ()
    #: How the domain sees this type (schemas/domainform.py); none: the domain does not.
    domain_forms: ClassVar[tuple[DomainForm, ...]] = ()

    event_id: UuidStr = Field(default_factory=new_event_id, description="see docs/events.md")
    event_type: str
    occurred_at: AwareDatetime = Field(default_factory=utcnow, description="UTC")
    execution_id: str
    workflow_id: str
    workflow_version: Int32
    seq: Long | None = Field(None, description="Position in the execution's history")
    correlation_id: str | None = None
    causation_id: str | None = None
    tenant: str = "default"

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._json_fields = tuple(
            name
            for name, info in cls.model_fields.items()
            if _has_marker(_annotated(info), AvroJson)
        )

    @property
    def key(self) -> str:
        """The Kafka key of this event."""
        return str(getattr(self, self.key_field))

    def to_avro(self) -> dict[str, Any]:
        """This event as a dict that the codec encodes with the newest schema."""
        out = {}
        for name, value in self.__dict__.items():
            if isinstance(value, Record):
                value = value.__dict__.copy()
            elif isinstance(value, list) and value and isinstance(value[0], Record):
                value = [v.__dict__.copy() for v in value]
            out[name] = value
        for name in self._json_fields:
            value = out[name]
            if value is not None or not _nullable(type(self), name):
                out[name] = canonical_json(value)
        return out

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> Self:
        """Validate a decoded record (JSON text parsed) into this type."""
        data = dict(record)
        for name in cls._json_fields:
            text = data.get(name)
            if isinstance(text, str):
                try:
                    data[name] = orjson.loads(text)
                except orjson.JSONDecodeError as exc:
                    raise EventValidationError(
                        cls.__name__, name, text, f"is not valid JSON ({exc})",
                        "send canonical JSON text in JSON-valued fields",
                    ) from exc
        return cls.validate_dict(data)

    @classmethod
    def validate_dict(cls, data: dict[str, Any]) -> Self:
        """``model_validate`` whose error names the first bad field, its value and a fix."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise validation_error(cls.__name__, exc, data, cls.derived_fields) from exc


def _annotated(info: Any) -> Any:
    ann = info.annotation
    if info.metadata:
        return Annotated[(ann, *info.metadata)]
    return ann


def _nullable(cls: type[BaseModel], name: str) -> bool:
    return type(None) in get_args(cls.model_fields[name].annotation)


_FIXES = {
    "missing": "add the field '{f}'",
    "extra_forbidden": "remove the field '{f}': {t} has no such field (see docs/events.md)",
    "enum": "use one of the allowed values",
    "literal_error": "use the value the event type requires",
    "timezone_aware": "give a timezone, e.g. '2024-01-01T00:00:00Z' (UTC)",
}


def validation_error(
    event_type: str, exc: ValidationError, data: Any, derived: tuple[str, ...] = ()
) -> EventValidationError:
    """Turn pydantic's first error into an ``EventValidationError`` (field, value, fix)."""
    errors = exc.errors()
    primary = [e for e in errors if not (e.get("loc") and e["loc"][0] in derived)]
    err = (primary or errors)[0]
    loc = err.get("loc", ())
    field = ".".join(str(p) for p in loc) or "<event>"
    value: Any = MISSING if err["type"] == "missing" else err.get("input", MISSING)
    fix = _FIXES.get(err["type"])
    if fix is None:
        expected = (err.get("ctx") or {}).get("expected")
        fix = f"give {expected}" if expected else f"give a valid value ({err['msg']})"
    fix = fix.replace("{f}", field).replace("{t}", event_type)
    problem = "is required" if err["type"] == "missing" else f"is invalid: {err['msg']}"
    return EventValidationError(event_type, field, value, problem, fix)

