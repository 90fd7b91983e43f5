from __future__ import annotations

import uuid

import pytest
from flowlog.schemas.ids import (
    NAMESPACE_FLOWLOG,
    execution_event_id,
    execution_id_for,
    uuid7,
)
from hypothesis import given
from hypothesis import strategies as st

pytestmark = pytest.mark.unit


def test_uuid7_layout_and_order() -> None:
    a, b = uuid7(1_700_000_000_000), uuid7(1_700_000_000_001)
    assert a.version == 7 and a.variant == uuid.RFC_4122
    assert int.from_bytes(a.bytes[:6], "big") == 1_700_000_000_000
    assert a < b
    assert uuid7() != uuid7()


@given(st.text(), st.integers(1, 2**62))
def test_execution_event_id_is_uuid5_of_execution_and_seq(execution_id: str, seq: int) -> None:
    eid = execution_event_id(execution_id, seq)
    assert eid == str(uuid.uuid5(NAMESPACE_FLOWLOG, f"{execution_id}:{seq}"))
    assert eid == execution_event_id(execution_id, seq)


@given(st.text(), st.text(), st.text())
def test_execution_ids_from_dedup_keys(workflow: str, key: str, other: str) -> None:
    assert execution_id_for(workflow, key) == execution_id_for(workflow, key)
    if other != key:
        assert execution_id_for(workflow, key) != execution_id_for(workflow, other)
    assert uuid.UUID(execution_id_for(workflow, None)).version == 7


def test_the_domain_derives_the_same_event_ids() -> None:
    aggregates_ids = pytest.importorskip("flowlog.aggregates.ids")
    assert aggregates_ids.NAMESPACE_FLOWLOG == NAMESPACE_FLOWLOG
    assert aggregates_ids.execution_event_id("ex", 3) == execution_event_id("ex", 3)
