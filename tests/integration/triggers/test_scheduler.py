"""The scheduler on the real PostgreSQL, Redis and Kafka, with an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flowlog.streams.triggers.schedule_admin import backfill, list_schedules
from flowlog.streams.triggers.scheduler import (
    Scheduler,
    connect,
    load_schedules,
    record,
    spec_of,
    upsert_schedule,
)
from flowlog.streams.triggers.slots import SlotDecision

from flowlog.settings import Settings
from tests.integration.ingress.hooks import read_topic
from tests.integration.triggers.conftest import Clock

T0 = datetime(2026, 3, 2, 8, 0, 30, tzinfo=UTC)


async def ledger(settings: Settings, workflow_id: str) -> list[tuple[Any, ...]]:
    conn = await connect(settings)
    try:
        cur = await conn.execute(
            "SELECT slot_at, state, execution_id, reason FROM schedule_slots "
            "WHERE workflow_id = %s ORDER BY slot_at", (workflow_id,))
        return list(await cur.fetchall())
    finally:
        await conn.close()


@pytest.fixture
async def schedulers(sched_settings: Settings) -> AsyncIterator[tuple[list[Scheduler], Clock]]:
    clock = Clock(T0)
    made = [Scheduler(sched_settings, clock=clock) for _ in range(2)]
    for s in made:
        await s.start()
    yield made, clock
    for s in made:
        await s.stop()


async def add_schedule(settings: Settings, workflow_id: str, config: dict[str, Any],
                       now: datetime) -> None:
    conn = await connect(settings)
    try:
        await upsert_schedule(conn, workflow_id, 0, 1, "default", config, now)
    finally:
        await conn.close()


async def test_two_schedulers_fire_each_slot_once(
        sched_settings: Settings, schedulers: tuple[list[Scheduler], Clock]) -> None:
    (a, b), clock = schedulers
    await add_schedule(sched_settings, "every5", {"cron": "*/5 * * * *"}, T0)
    for i in range(60):  # an hour in steps of a minute, both ticking at once
        clock.now += timedelta(minutes=1)
        await asyncio.gather(*((a.tick(), b.tick()) if i % 2 else (b.tick(), a.tick())))
    rows = await ledger(sched_settings, "every5")
    fired = [r for r in rows if r[1] == "fired"]
    assert len(fired) == 12 and [r for r in rows if r[1] == "planned"]
    triggers = await read_topic(sched_settings)
    assert sorted(t["execution_id"] for t in triggers) == sorted(r[2] for r in fired)
    assert a.fired + b.fired == 12  # whoever held the lock fired; nobody doubled a slot
    spec = spec_of((await load_schedules(await connect(sched_settings)))[0], sched_settings)
    assert {t["dedup_key"] for t in triggers} == {spec.slot_id(r[0]) for r in fired}
    assert all(t["source"] == "schedule" for t in triggers)


async def test_a_stalled_scheduler_is_fenced_out(
        sched_settings: Settings, schedulers: tuple[list[Scheduler], Clock]) -> None:
    (a, b), clock = schedulers
    await add_schedule(sched_settings, "fenced", {"cron": "0 * * * *"}, T0)
    assert a.lock is not None and b.lock is not None
    token_a = await a.lock.acquire("fenced:0")
    assert token_a is not None and await b.lock.acquire("fenced:0") is None
    # a stalls past its lock's lifetime; b takes over and records the 09:00 slot
    await a._redis.delete(f"{a.prefix}lock:fenced:0")
    clock.now = T0 + timedelta(hours=1)
    done = await b.tick()
    assert [(d.at.hour, d.state) for _, d in done] == [(9, "fired")]
    # a wakes up and tries to write with its old token: refused, nothing changes
    conn = await connect(sched_settings)
    row = (await load_schedules(conn))[0]
    spec = spec_of(row, sched_settings)
    stale = [SlotDecision(T0 + timedelta(minutes=59, seconds=30), "missed", "stale")]
    assert not await record(conn, row, token_a, stale, T0, spec, None)
    await conn.close()
    assert [(r[0].hour, r[1]) for r in await ledger(sched_settings, "fenced")] == [
        (9, "fired"), (10, "planned")]
    assert (await load_schedules(await connect(sched_settings)))[0].cursor_at == clock.now


@pytest.mark.parametrize(("policy", "fired_hours"), [
    ("skip", [13]), ("run_once", [12, 13]), ("run_all", [10, 11, 12, 13]),
])
async def test_downtime_under_each_policy(
        sched_settings: Settings, schedulers: tuple[list[Scheduler], Clock], policy: str,
        fired_hours: list[int]) -> None:
    (a, _), clock = schedulers
    wf = f"down-{policy}"
    await add_schedule(sched_settings, wf, {"cron": "0 * * * *", "missed": policy}, T0)
    clock.now = T0 + timedelta(hours=1)  # 09:00:30: fires 09:00
    await a.tick()
    clock.now = T0 + timedelta(hours=5)  # down from 09:00:30 to 13:00:30
    await a.tick()
    rows = await ledger(sched_settings, wf)
    fired = [r[0].hour for r in rows if r[1] == "fired"]
    missed = [r[0].hour for r in rows if r[1] == "missed"]
    assert fired == [9, *fired_hours]
    assert sorted(missed + fired) == [9, 10, 11, 12, 13]
    assert len(await read_topic(sched_settings)) == len(fired)


async def test_backfill_preview_is_what_it_fires(
        sched_settings: Settings, schedulers: tuple[list[Scheduler], Clock]) -> None:
    (a, _), clock = schedulers
    await add_schedule(sched_settings, "bf", {"cron": "0 7 * * 1-5", "timezone": "Europe/Paris",
                                              "window": {"from": "06:00", "to": "08:00"}}, T0)
    clock.now = datetime(2026, 3, 3, 6, 0, 10, tzinfo=UTC)  # Tue 07:00:10 Paris: fires live
    await a.tick()
    start, end = datetime(2026, 2, 23, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC)
    preview = await backfill(sched_settings, "bf", start, end, dry_run=True)
    assert [d.at.day for _, d in preview] == [
        23, 24, 25, 26, 27, 2, 3]
    assert await read_topic(sched_settings) != []  # the live slot
    before = {t["execution_id"] for t in await read_topic(sched_settings)}
    done = await backfill(sched_settings, "bf", start, end, dry_run=False)
    assert [(d.at, d.state) for _, d in done] == [(d.at, d.state) for _, d in preview]
    spec = spec_of(preview[0][0], sched_settings)
    published = [t["execution_id"] for t in await read_topic(sched_settings)]
    want = [spec.execution_id(d.at) for _, d in preview if d.state == "fired"]
    assert set(published) == set(want)  # the live 03-03 slot: the same execution id
    assert spec.execution_id(clock.now.replace(minute=0, second=0)) in before
    states = {r[0].day: r[1] for r in await ledger(sched_settings, "bf")}
    assert all(states[d] == "fired" for d in (23, 24, 25, 26, 27, 2, 3))
    views = await list_schedules(sched_settings, clock.now, n=2)
    assert views[0].counts["fired"] == 7 and len(views[0].upcoming) == 2
