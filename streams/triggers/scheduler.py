"""The scheduler (``flowlog worker scheduler``): cron triggers → ``TriggerReceived``.

Several may run. Per schedule and tick: take the schedule's fenced lock in Redis (a lock
plus a token from a counter that only grows), decide the slots due since the cursor
(``slots.decide``, pure), publish the fired ones (dedup key = slot id, so the execution id
is derived), then in one PostgreSQL transaction advance the cursor and write the ledger
rows, but only if no newer token has written (``fence <= token``): a scheduler whose lock
expired while it was stalled cannot move the ledger back or record twice. Publishing
before recording makes a crash in between harmless: the next holder publishes the same
slot again, which names the same execution.

The ledger (``schedule_slots``: planned, fired, missed, skipped) is rows, not events:
docs/ingress.md says why. Time comes from an injected clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
from flowlog.schemas.events import TriggerReceived
from flowlog.schemas.sdk import EventProducer
from flowlog.streams.triggers.definitions import TrackingRegistry
from flowlog.streams.triggers.slots import ScheduleSpec, SlotDecision, decide, next_slots
from psycopg import AsyncConnection

from flowlog.observability.metrics import EVENTS_OUT
from flowlog.settings import Settings

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def utcnow() -> datetime:
    return datetime.now(UTC)


class FencedLock:
    """A Redis lock whose holder also gets a fencing token (strictly increasing)."""

    def __init__(self, redis: Any, prefix: str, ttl_s: float) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self._release = redis.register_script(_RELEASE)

    async def acquire(self, name: str) -> int | None:
        token = int(await self.redis.incr(f"{self.prefix}fence:{name}"))
        ok = await self.redis.set(f"{self.prefix}lock:{name}", str(token), nx=True,
                                  px=self.ttl_ms)
        return token if ok else None

    async def release(self, name: str, token: int) -> None:
        await self._release(keys=[f"{self.prefix}lock:{name}"], args=[str(token)])


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    workflow_id: str
    trigger_index: int
    workflow_version: int
    tenant: str
    config: dict[str, Any]
    active: bool
    since: datetime
    cursor_at: datetime | None
    fence: int


async def connect(settings: Settings, schema: str | None = None) -> AsyncConnection[Any]:
    return await AsyncConnection.connect(
        settings.pg_dsn, autocommit=True,
        options=f"-c search_path={schema or settings.pg_schema}")


async def upsert_schedule(conn: AsyncConnection[Any], workflow_id: str, index: int,
                          version: int, tenant: str, config: dict[str, Any],
                          now: datetime) -> None:
    """Make the schedule active; a schedule (re)activated starts at ``now`` (the slots of a
    paused time are not caught up)."""
    await conn.execute(
        "INSERT INTO schedules (workflow_id, trigger_index, workflow_version, tenant, config, "
        "active, since, cursor_at) VALUES (%s, %s, %s, %s, %s, true, %s, %s) "
        "ON CONFLICT (workflow_id, trigger_index) DO UPDATE SET "
        "workflow_version = EXCLUDED.workflow_version, tenant = EXCLUDED.tenant, "
        "config = EXCLUDED.config, active = true, updated_at = now(), "
        "since = CASE WHEN schedules.active THEN schedules.since ELSE EXCLUDED.since END, "
        "cursor_at = CASE WHEN schedules.active THEN schedules.cursor_at "
        "ELSE EXCLUDED.cursor_at END",
        (workflow_id, index, version, tenant, orjson.dumps(config).decode(), now, now))


async def deactivate(conn: AsyncConnection[Any], workflow_id: str,
                     keep: list[int] | None = None) -> None:
    await conn.execute(
        "UPDATE schedules SET active = false, updated_at = now() WHERE workflow_id = %s "
        "AND active AND NOT (trigger_index = ANY(%s))", (workflow_id, keep or []))


async def load_schedules(conn: AsyncConnection[Any], workflow_id: str | None = None,
                         active_only: bool = True) -> list[ScheduleRow]:
    sql = ("SELECT workflow_id, trigger_index, workflow_version, tenant, config, active, "
           "since, cursor_at, fence FROM schedules WHERE true")
    args: list[Any] = []
    if active_only:
        sql += " AND active"
    if workflow_id is not None:
        sql += " AND workflow_id = %s"
        args.append(workflow_id)
    cur = await conn.execute(sql + " ORDER BY workflow_id, trigger_index", args)
    return [ScheduleRow(*row) for row in await cur.fetchall()]


async def record(conn: AsyncConnection[Any], row: ScheduleRow, token: int | None,
                 decisions: list[SlotDecision], cursor: datetime | None,
                 spec: ScheduleSpec, planned: datetime | None) -> bool:
    """Advance the cursor and write the ledger rows in one transaction; False (nothing
    written) when a newer fencing token has written. ``token`` None: no fence (backfill)."""
    async with conn.transaction():
        if token is not None:
            cur = await conn.execute(
                "UPDATE schedules SET fence = %s, cursor_at = %s, updated_at = now() "
                "WHERE workflow_id = %s AND trigger_index = %s AND fence <= %s RETURNING 1",
                (token, cursor, row.workflow_id, row.trigger_index, token))
            if await cur.fetchone() is None:
                return False
        for d in decisions:
            await conn.execute(
                "INSERT INTO schedule_slots (workflow_id, trigger_index, slot_at, slot_id, "
                "state, reason, execution_id, workflow_version, fence) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (workflow_id, trigger_index, slot_at) DO UPDATE SET "
                "state = EXCLUDED.state, reason = EXCLUDED.reason, "
                "execution_id = EXCLUDED.execution_id, fence = EXCLUDED.fence, "
                "recorded_at = now() WHERE schedule_slots.state <> 'fired'",
                (row.workflow_id, row.trigger_index, d.at, spec.slot_id(d.at), d.state,
                 d.reason, spec.execution_id(d.at) if d.state == "fired" else None,
                 row.workflow_version, token or 0))
        if planned is not None:
            await conn.execute(
                "INSERT INTO schedule_slots (workflow_id, trigger_index, slot_at, slot_id, "
                "state, workflow_version, fence) VALUES (%s, %s, %s, %s, 'planned', %s, %s) "
                "ON CONFLICT DO NOTHING",
                (row.workflow_id, row.trigger_index, planned, spec.slot_id(planned),
                 row.workflow_version, token or 0))
    return True


def trigger_for(row: ScheduleRow, spec: ScheduleSpec, at: datetime) -> TriggerReceived:
    return TriggerReceived(workflow_id=row.workflow_id, workflow_version=row.workflow_version,
                           source="schedule", input=spec.input, dedup_key=spec.slot_id(at),
                           tenant=row.tenant)


def spec_of(row: ScheduleRow, settings: Settings) -> ScheduleSpec:
    return ScheduleSpec.from_config(row.workflow_id, row.trigger_index, row.config,
                                    settings.scheduler_max_catchup)


class Scheduler:
    """One scheduler process's state; ``tick()`` does one pass over every schedule."""

    def __init__(self, settings: Settings, *, schema: str | None = None,
                 clock: Clock = utcnow, namespace: str | None = None) -> None:
        self.settings = settings
        self.schema = schema or settings.pg_schema
        self.clock = clock
        self.prefix = f"{namespace if namespace is not None else settings.topic_prefix}sched:"
        self._conn: AsyncConnection[Any] | None = None
        self._redis: Any = None
        self._producer: EventProducer | None = None
        self.lock: FencedLock | None = None
        self.fired = 0
        self.fenced = 0

    async def start(self) -> None:
        self._conn = await connect(self.settings, self.schema)
        self._redis = aioredis.from_url(self.settings.redis_url)
        self.lock = FencedLock(self._redis, self.prefix, self.settings.scheduler_lock_ttl_s)
        self._producer = EventProducer.from_settings(self.settings, **{"linger.ms": 1})

    async def stop(self) -> None:
        if self._producer is not None:
            await asyncio.to_thread(self._producer.close, 10.0)
        if self._redis is not None:
            await self._redis.aclose()
        if self._conn is not None:
            await self._conn.close()

    @property
    def conn(self) -> AsyncConnection[Any]:
        assert self._conn is not None, "call start() first"
        return self._conn

    async def sync(self, registry: TrackingRegistry, workflow_ids: set[str]) -> None:
        """Make ``schedules`` match the schedule triggers of these workflows."""
        now = self.clock()
        for wid in sorted(workflow_ids):
            version, triggers = registry.active_triggers(wid, "schedule")
            tenant = registry.tenants.get(wid, "default")
            for index, config in triggers:
                await upsert_schedule(self.conn, wid, index, version, tenant, config, now)
            await deactivate(self.conn, wid, [i for i, _ in triggers])

    async def tick(self) -> list[tuple[str, SlotDecision]]:
        """One pass: every active schedule whose lock this process gets. Returns the
        (workflow id, decision) pairs it recorded."""
        assert self.lock is not None and self._producer is not None
        if self._conn is None or self._conn.closed:  # PostgreSQL restarted: reconnect
            self._conn = await connect(self.settings, self.schema)
        done: list[tuple[str, SlotDecision]] = []
        for row in await load_schedules(self.conn):
            name = f"{row.workflow_id}:{row.trigger_index}"
            token = await self.lock.acquire(name)
            if token is None:
                continue  # another scheduler has it
            try:
                done += await self._run_one(row, token)
            except Exception:
                log.exception("schedule %s: tick failed (retried next tick)", name)
            finally:
                await self.lock.release(name, token)
        return done

    async def _run_one(self, row: ScheduleRow, token: int) -> list[tuple[str, SlotDecision]]:
        assert self._producer is not None
        # Re-read under the lock: another scheduler may have moved the cursor.
        fresh = [r for r in await load_schedules(self.conn, row.workflow_id)
                 if r.trigger_index == row.trigger_index]
        if not fresh:
            return []
        row = fresh[0]
        spec = spec_of(row, self.settings)
        now = self.clock()
        decisions, cursor = decide(spec, row.cursor_at or row.since, now)
        fire = [trigger_for(row, spec, d.at) for d in decisions if d.state == "fired"]
        if fire:
            summary = await asyncio.to_thread(self._producer.publish_many, fire)
            if not summary.ok:
                raise RuntimeError(f"publishing {len(fire)} triggers failed: {summary}")
            EVENTS_OUT.labels("scheduler", "triggers").inc(len(fire))
        upcoming = next_slots(spec, cursor, 1)
        if not await record(self.conn, row, token, decisions, cursor, spec,
                            upcoming[0] if upcoming else None):
            self.fenced += 1
            log.warning("schedule %s:%s: a newer scheduler holds it (token %s); nothing "
                        "recorded", row.workflow_id, row.trigger_index, token)
            return []
        self.fired += len(fire)
        return [(row.workflow_id, d) for d in decisions]


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """``flowlog worker scheduler``: follow definitions, tick until ``stop``."""
    from flowlog.streams.runtime.registry import RegistryFollower

    registry = TrackingRegistry()
    follower = RegistryFollower(settings, registry)
    await follower.start()
    scheduler = Scheduler(settings)
    await scheduler.start()
    try:
        await scheduler.sync(registry, set(registry.workflows) | {
            r.workflow_id for r in await load_schedules(scheduler.conn, active_only=True)})
        registry.take_dirty()
        while not stop.is_set():
            dirty = registry.take_dirty()
            try:
                if dirty:
                    await scheduler.sync(registry, dirty)
                await scheduler.tick()
            except Exception:
                registry.dirty |= dirty
                log.exception("scheduler pass failed; retrying")
            try:
                await asyncio.wait_for(stop.wait(), settings.scheduler_tick_s)
            except TimeoutError:
                pass
    finally:
        await scheduler.stop()
        await follower.stop()
