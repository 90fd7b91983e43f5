"""Execution events: the names and fields of docs/events.md, one frozen dataclass each.

The classes are generated from the contract's declarations (`flowlog.schemas.events` and
their ``domain_forms``) into `_generated_events.py` by ``flowlog schemas generate``; this
module re-exports them and adds the JSON form recorded histories use. Every event carries
the envelope (`event_id`, `seq`, `occurred_at`, `execution_id`, `workflow_id`,
`workflow_version`, `correlation_id`, `causation_id`, `tenant`); `flowlog.aggregates.records`
maps each onto its Avro type by a table derived from the same declaration. JSON-valued fields
hold plain JSON values.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

from flowlog.aggregates.execution._generated_events import *  # noqa: F403 (the generated classes)
from flowlog.aggregates.execution._generated_events import (
    DATETIME_FIELDS,
    EVENT_TYPES,
    JSON,
    ExecutionEvent,
)

__all__ = ["EVENT_TYPES", "JSON", "ExecutionEvent", "event_from_dict", "event_to_dict",
           *EVENT_TYPES]

_FIELD_NAMES: dict[type[ExecutionEvent], tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in EVENT_TYPES.values()
}


def event_to_dict(event: ExecutionEvent) -> dict[str, Any]:
    """A JSON-able dict with `event_type`; datetimes as ISO 8601 strings."""
    out: dict[str, Any] = {"event_type": event.event_type}
    for name in _FIELD_NAMES[type(event)]:
        value = getattr(event, name)
        out[name] = value.isoformat() if name in DATETIME_FIELDS else value
    return out


def event_from_dict(data: dict[str, Any]) -> ExecutionEvent:
    """The inverse of `event_to_dict`; raises KeyError for an unknown event_type."""
    cls = EVENT_TYPES[data["event_type"]]
    kwargs: dict[str, Any] = {}
    for name in _FIELD_NAMES[cls]:
        value = data.get(name)
        if name in DATETIME_FIELDS and isinstance(value, str):
            value = datetime.fromisoformat(value)
        kwargs[name] = value
    return cls(**kwargs)
