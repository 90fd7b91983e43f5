"""Round trips: every event type survives encode -> decode -> validate unchanged."""

from __future__ import annotations

import pytest
from flowlog.schemas.codec import Codec
from flowlog.schemas.events import EVENT_TYPES, ExecutionEventBatch, to_model
from flowlog.schemas.model import Event
from flowlog.schemas.testing import batches, events
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.unit
CODEC = Codec()


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_every_event_type_round_trips(name: str) -> None:
    cls = EVENT_TYPES[name]

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(events(cls))
    def check(event: Event) -> None:
        data = CODEC.encode_event(event)
        decoded = CODEC.decode(data)
        assert decoded.name == name
        assert decoded.writer_version == CODEC.catalog.newest(name).version
        back = to_model(decoded.name, decoded.record)
        assert back == event
        assert type(back) is cls
        # the typed path and the dict path produce the same bytes
        assert CODEC.encode(name, back.to_avro()) == data

    check()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_batches_round_trip(batch: ExecutionEventBatch) -> None:
    data = CODEC.encode_event(batch)
    decoded = CODEC.decode(data)
    assert decoded.name == "ExecutionEventBatch"
    back = to_model(decoded.name, decoded.record)
    assert back == batch
    assert [type(e) for e in back.events] == [type(e) for e in batch.events]  # type: ignore[union-attr]


@given(st.data())
@settings(max_examples=30, deadline=None)
def test_record_and_model_paths_agree_for_triggers(data: st.DataObject) -> None:
    event = data.draw(events(EVENT_TYPES["TriggerReceived"]))
    record = CODEC.decode(CODEC.encode_event(event)).record
    assert record["event_id"] == event.event_id
    assert record["execution_id"] == event.execution_id
