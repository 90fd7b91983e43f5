"""The derived ids are computed with hashlib, not ``uuid.uuid5``, yet are the same values."""

from __future__ import annotations

import uuid

import pytest
from flowlog.aggregates import records as wire
from flowlog.schemas.ids import (
    NAMESPACE_EXECUTION,
    NAMESPACE_FLOWLOG,
    execution_event_id,
    execution_id_for,
    flowlog_uuid5,
)
from hypothesis import given
from hypothesis import strategies as st

pytestmark = pytest.mark.unit
names = st.text(st.characters(exclude_categories=["Cs"]))


@given(names)
def test_flowlog_uuid5_is_uuid5(name: str) -> None:
    assert flowlog_uuid5(name) == str(uuid.uuid5(NAMESPACE_FLOWLOG, name))


@given(names, st.integers(0, 2**63))
def test_execution_event_ids_are_unchanged(execution_id: str, seq: int) -> None:
    assert execution_event_id(execution_id, seq) == str(
        uuid.uuid5(NAMESPACE_FLOWLOG, f"{execution_id}:{seq}"))


@given(names, names)
def test_execution_ids_from_dedup_keys_are_unchanged(workflow_id: str, key: str) -> None:
    assert execution_id_for(workflow_id, key) == str(
        uuid.uuid5(NAMESPACE_EXECUTION, f"{workflow_id}\x1f{key}"))


@given(st.lists(names, min_size=1, max_size=4))
def test_wire_derived_ids_are_unchanged(parts: list[str]) -> None:
    derived = wire.derived_id(*parts)
    assert derived == str(uuid.uuid5(NAMESPACE_FLOWLOG, ":".join(parts)))
    parsed = uuid.UUID(derived)
    assert parsed.version == 5 and parsed.variant == uuid.RFC_4122


def test_a_known_id() -> None:
    # pinned: any other implementation in any language must give this
    assert execution_event_id("0192f8a4-7c1e-7d3a-9b2f-5e4d3c2b1a00", 7) == str(
        uuid.uuid5(uuid.UUID("6f1d1c2e-8b0a-5c7e-9a43-0f10c0ffee00"),
                   "0192f8a4-7c1e-7d3a-9b2f-5e4d3c2b1a00:7"))
