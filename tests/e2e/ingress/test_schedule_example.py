"""The fan-out-fan-in example fires by its own schedule (weekdays 07:00 Europe/Paris),
with the clock injected, and runs to its end on the engine."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from flowlog.streams.runtime.registry import RegistryFollower
from flowlog.streams.triggers.definitions import TrackingRegistry
from flowlog.streams.triggers.scheduler import Scheduler

from tests.e2e.conftest import EXAMPLES, Engine, events_of
from tests.integration.ingress.conftest import migrate
from tests.integration.triggers.conftest import Clock


async def test_fan_out_fan_in_fires_on_its_schedule(engine: Engine, pg_schema: str,
                                                     redis_url: str) -> None:
    settings = engine.settings.model_copy(update={"pg_schema": pg_schema})
    migrate(settings, pg_schema)
    await engine.apply(EXAMPLES / "fan-out-fan-in.yaml")
    registry = TrackingRegistry()
    follower = RegistryFollower(settings, registry)
    await follower.start()
    clock = Clock(datetime(2026, 11, 30, 5, 59, tzinfo=UTC))  # Monday 06:59 in Paris
    scheduler = Scheduler(settings, clock=clock)
    await scheduler.start()
    try:
        await scheduler.sync(registry, set(registry.workflows))
        assert await scheduler.tick() == []  # nothing due before 07:00
        clock.now = datetime(2026, 11, 30, 6, 0, 5, tzinfo=UTC)  # 07:00:05 Paris
        done = await scheduler.tick()
    finally:
        await scheduler.stop()
        await follower.stop()
    assert [(wf, d.at, d.state) for wf, d in done] == [
        ("fan-out-fan-in", datetime(2026, 11, 30, 6, 0, tzinfo=UTC), "fired")]
    from flowlog.schemas.ids import execution_id_for

    execution_id = execution_id_for("fan-out-fan-in",
                                    "schedule:0:2026-11-30T06:00:00+00:00")
    events = await engine.wait(execution_id)
    assert events[-1]["event_type"] == "ExecutionSucceeded", events[-1]
    started = events_of(events, "ExecutionStarted")[0]
    assert orjson.loads(started["input"]) == {"symbol": "ACME"}
    assert orjson.loads(events[-1]["output"])["best"] in (10.5, 11.0)
