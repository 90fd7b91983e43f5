"""Hypothesis strategies for every event type (for tests here and in other packages).

Needs ``hypothesis`` (a test dependency); nothing in the runtime imports this module.
"""

from __future__ import annotations

import types
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from flowlog.schemas.events import (
    DefinitionEvent,
    EventQuarantined,
    ExecutionEvent,
    ExecutionEventBatch,
    TimerFired,
    TriggerReceived,
)
from flowlog.schemas.ids import execution_event_id
from flowlog.schemas.model import AvroInt, AvroJson, Event
from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
timestamps = st.builds(
    lambda dt, minutes: dt.replace(tzinfo=UTC).astimezone(timezone(timedelta(minutes=minutes))),
    st.datetimes(datetime(1971, 1, 1), datetime(2200, 1, 1)),
    st.integers(-12 * 60, 14 * 60),
)


def _for(ann: Any) -> st.SearchStrategy[Any]:
    origin = get_origin(ann)
    if origin is Annotated:
        base, *meta = get_args(ann)
        if any(isinstance(m, AvroJson) for m in meta):
            return json_values
        if any(isinstance(m, AvroInt) for m in meta):
            return int32
        return _for(base)
    if origin in (Union, types.UnionType):
        (inner,) = [a for a in get_args(ann) if a is not type(None)]
        return st.none() | _for(inner)
    if origin is Literal:
        return st.sampled_from(get_args(ann))
    if origin is list:
        return st.lists(_for(get_args(ann)[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(texts, _for(get_args(ann)[1]), max_size=3)
    if ann is AwareDatetime:
        return timestamps
    if isinstance(ann, type) and issubclass(ann, Enum):
        return st.sampled_from(list(ann))
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return model_dicts(ann).map(ann.model_validate)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        str: texts, int: int64, bool: st.booleans(), bytes: st.binary(max_size=40),
        float: st.floats(allow_nan=False),
    }
    return simple[ann]


def model_dicts(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    fields = {}
    for name, info in model.model_fields.items():
        ann: Any = info.annotation
        if info.metadata:
            ann = Annotated[(ann, *info.metadata)]
        fields[name] = st.uuids().map(str) if name == "event_id" else _for(ann)
    return st.fixed_dictionaries(fields)


def _fix(cls: type[Event], data: dict[str, Any]) -> dict[str, Any]:
    data = dict(data)
    if issubclass(cls, ExecutionEvent) or cls is TimerFired:
        if issubclass(cls, ExecutionEvent) or data["seq"] is not None:
            data["seq"] = (abs(data["seq"] or 1) % 2**62) or 1
    if cls is TriggerReceived and data.get("dedup_key") is not None:
        data.pop("execution_id")
    if issubclass(cls, DefinitionEvent) and "version" in data:
        data["version"] = data["workflow_version"]
    return data


def events(cls: type[Event]) -> st.SearchStrategy[Event]:
    """Valid events of type ``cls`` (every field drawn, within the contract's rules)."""
    return model_dicts(cls).map(lambda d: cls.model_validate(_fix(cls, d)))


def batch_of(execution_id: str, first: int, picked: list[Event],
             shared: datetime | None = None) -> ExecutionEventBatch:
    """The events renumbered as one execution's contiguous seqs from ``first``; with
    ``shared``, all at that time (one decision's events share one `now`)."""
    evs = [
        e.model_copy(update={
            "execution_id": execution_id, "seq": first + i,
            "event_id": execution_event_id(execution_id, first + i),
            **({"occurred_at": shared} if shared is not None else {}),
        })
        for i, e in enumerate(picked)
    ]
    return ExecutionEventBatch(execution_id=execution_id, first_seq=first,
                               last_seq=first + len(evs) - 1, events=evs)


def batches() -> st.SearchStrategy[ExecutionEventBatch]:
    """Valid batches: 1-5 execution events of one execution with contiguous seqs."""
    from flowlog.schemas.events import EXECUTION_TYPES

    one = st.one_of([events(c) for c in EXECUTION_TYPES])
    return st.builds(batch_of, texts, st.integers(1, 2**40),
                     st.lists(one, min_size=1, max_size=5))


__all__ = ["EventQuarantined", "batch_of", "batches", "events", "json_values", "model_dicts"]
