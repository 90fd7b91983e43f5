"""Search attributes over real PostgreSQL: declare → backfill over existing executions →
values equal a fresh evaluation; crash between batches and resume (same values, nothing
counted twice); the live path for new and growing executions; an expression that fails for
some executions is counted, never fatal; the worker process's round."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from flowlog.aggregates.execution.events import ExecutionEvent
from flowlog.projections import search_attributes as sa
from flowlog.projections import search_attributes_store as store
from flowlog.projections.migrate import migrate
from flowlog.projections.search_attributes_worker import Evaluator

from flowlog.settings import Settings
from tests.integration.api.conftest import TEMPLATES, Loader, decisions, history, template

ATTRS = {
    "priority": ("keyword", 'has(execution.input.priority) ? execution.input.priority : "none"'),
    "retries": ("int", 'events.filter(e, e.type == "NodeRetryScheduled").size()'),
    "cost": ("double", "execution.cost_usd"),
    "had_incident": ("bool", 'events.exists(e, e.type == "IncidentRaised")'),
    "finished": ("datetime", "execution.finished_at"),
}
N = 10


class World:
    def __init__(self, settings: Settings, schema: str, loader: Loader) -> None:
        self.settings, self.schema, self.loader = settings, schema, loader
        self.histories: dict[str, list[ExecutionEvent]] = {}
        self.conn = store.connect(settings.pg_dsn, schema)
        self.audit: Any = loader.audit.store

    async def add(self, eid: str, i: int, tenant: str = "acme",
                  upto: int | None = None) -> None:
        events = history(TEMPLATES[i % 4], eid, tenant, timedelta(minutes=i))
        ds = decisions(events)
        done = len(self.histories.get(eid, []))
        keep = [d for d in ds if d[0].seq > done]
        if upto is not None:
            keep = [d for d in keep if d[-1].seq <= upto]
        await self.loader.apply(keep, publish=False)
        last = keep[-1][-1].seq if keep else done
        self.histories[eid] = [e for e in events if e.seq <= last]

    def expected(self, name: str) -> dict[str, Any]:
        type_, source = ATTRS[name]
        decl = sa.declaration(name, type_, source)
        return {eid: sa.evaluate(decl, sa.activation(h), eid).value
                for eid, h in self.histories.items()}

    def values(self, name: str) -> dict[str, Any]:
        column = sa.COLUMN[ATTRS[name][0]]
        return dict(self.conn.execute(
            f"SELECT execution_id, {column} FROM search_attribute_values WHERE attribute = %s",
            (name,)).fetchall())


@pytest.fixture
async def world(settings: Settings, pg_schema: str) -> AsyncIterator[World]:
    await asyncio.to_thread(migrate, settings, pg_schema)
    settings = settings.model_copy(update={"pg_schema": pg_schema})
    loader = await Loader(settings, pg_schema).start()
    at = template(TEMPLATES[0])[0][0].occurred_at - timedelta(days=1)
    for name in TEMPLATES:
        await loader.define(template(name)[1], at)
    w = World(settings, pg_schema, loader)
    for i in range(N):
        await w.add(f"x-{i:03d}", i, "acme" if i % 2 else "zeta")
    try:
        yield w
    finally:
        w.conn.close()
        await loader.close()


def declare(w: World, name: str) -> None:
    store.declare(w.conn, sa.declaration(name, *ATTRS[name]))


async def test_backfill_every_type_equals_a_fresh_evaluation(world: World) -> None:
    # nothing queued while no attribute is declared
    assert world.conn.execute("SELECT count(*) FROM search_attribute_pending").fetchone() == (0,)
    for name in ATTRS:
        declare(world, name)
        row = store.get(world.conn, name)
        assert row is not None and row.state == "backfilling" and row.total == N
        row = store.backfill(world.conn, store.audit_source(world.audit), name, size=4)
        assert (row.state, row.done, row.total, row.errors) == ("ready", N, N, 0)
        assert world.values(name) == world.expected(name)
    assert {v for v in world.values("priority").values()} == {"normal", "none"}
    assert any(world.values("had_incident").values())
    assert any(v > 0 for v in world.values("retries").values())


async def test_backfill_resumes_after_a_crash_between_batches(world: World) -> None:
    declare(world, "retries")
    batches = 0

    class Crash(Exception):
        pass

    def crash_after_two(_: store.BatchResult) -> None:
        nonlocal batches
        batches += 1
        if batches == 2:
            raise Crash

    with pytest.raises(Crash):
        store.backfill(world.conn, store.audit_source(world.audit), "retries", size=3,
                       on_batch=crash_after_two)
    row = store.get(world.conn, "retries")
    assert row is not None and (row.state, row.done) == ("backfilling", 6)
    assert len(world.values("retries")) == 6
    # a fresh connection, as a restarted process would have
    world.conn.close()
    world.conn = store.connect(world.settings.pg_dsn, world.schema)
    row = store.backfill(world.conn, store.audit_source(world.audit), "retries", size=3)
    assert (row.state, row.done, row.total) == ("ready", N, N)
    assert world.values("retries") == world.expected("retries")
    assert world.conn.execute("SELECT count(*) FROM search_attribute_values").fetchone() == (N,)
    # idempotent: evaluating everything again writes the same values
    world.conn.execute("UPDATE search_attributes SET state = 'backfilling', "
                       "backfill_cursor = '', done = 0")
    row = store.backfill(world.conn, store.audit_source(world.audit), "retries", size=7)
    assert (row.state, row.done) == ("ready", N)
    assert world.values("retries") == world.expected("retries")


async def test_live_path_new_and_growing_executions(world: World) -> None:
    for name in ("retries", "had_incident"):
        declare(world, name)
        store.backfill(world.conn, store.audit_source(world.audit), name)
    # a new execution, first half only (index 2: the dead-letter history has an incident
    # late), then the rest
    first = [e.seq for e in history(TEMPLATES[2], "n", "acme", timedelta())]
    await world.add("new-1", 2, upto=first[len(first) // 2])
    queued = world.conn.execute("SELECT execution_id, last_seq FROM "
                                "search_attribute_pending").fetchall()
    assert queued == [("new-1", world.histories["new-1"][-1].seq)]
    assert 1 < queued[0][1] < first[-1]
    assert store.drain_pending(world.conn, store.audit_source(world.audit)) == (1, 0)
    assert world.values("retries")["new-1"] == world.expected("retries")["new-1"]
    await world.add("new-1", 2)
    assert store.drain_pending(world.conn, store.audit_source(world.audit)) == (1, 0)
    assert world.values("had_incident")["new-1"] is True
    assert world.values("retries") == world.expected("retries")
    assert world.conn.execute("SELECT count(*) FROM search_attribute_pending").fetchone() == (0,)


async def test_audit_store_behind_waits_then_catches_up(world: World) -> None:
    declare(world, "retries")
    lagging: dict[str, int] = {"x-003": 0}

    def behind(eid: str) -> list[ExecutionEvent]:
        events: list[ExecutionEvent] = world.audit.events(eid)
        return events[:lagging[eid]] if eid in lagging else events

    row = store.backfill(world.conn, store.one_by_one(behind), "retries")
    assert (row.state, row.done, row.waiting) == ("ready", N, 1)
    assert "x-003" not in world.values("retries")
    assert store.drain_pending(world.conn, store.one_by_one(behind)) == (0, 1)
    lagging.clear()
    assert store.drain_pending(world.conn, store.one_by_one(behind)) == (1, 0)
    assert world.values("retries") == world.expected("retries")
    row = store.get(world.conn, "retries")
    assert row is not None and row.waiting == 0


async def test_an_expression_failing_for_some_executions_is_counted(world: World) -> None:
    decl = sa.declaration("ticket_id", "keyword", "execution.input.ticket.id")
    store.declare(world.conn, decl)
    row = store.backfill(world.conn, store.audit_source(world.audit), "ticket_id")
    with_ticket = sum(1 for h in world.histories.values()
                      if "ticket" in getattr(h[0], "input", {}))
    assert 0 < with_ticket < N
    assert (row.state, row.done, row.errors) == ("ready", N, N - with_ticket)
    errors = world.conn.execute("SELECT error FROM search_attribute_values WHERE error IS NOT "
                                "NULL LIMIT 1").fetchone()
    assert errors is not None and "ticket" in errors[0]
    # a value of the wrong type at run time is an error on that execution too
    store.declare(world.conn, sa.declaration(
        "odd", "int", 'execution.tenant == "zeta" ? execution.tenant : 1'))
    row = store.backfill(world.conn, store.audit_source(world.audit), "odd")
    assert row.errors == N // 2 and row.state == "ready"


async def test_the_worker_round_does_live_and_backfill(world: World) -> None:
    declare(world, "cost")
    ev = Evaluator(world.settings, world.schema)
    try:
        while await asyncio.to_thread(ev.round):
            pass
        row = store.get(world.conn, "cost")
        assert row is not None and row.state == "ready"
        await world.add("w-1", 0)
        assert await asyncio.to_thread(ev.round) == 1
        assert world.values("cost") == world.expected("cost")
    finally:
        ev.close()
    assert store.remove(world.conn, "cost") is True
    assert world.conn.execute("SELECT count(*) FROM search_attribute_values").fetchone() == (0,)
    assert store.remove(world.conn, "cost") is False


async def test_declare_twice_is_refused(world: World) -> None:
    declare(world, "cost")
    with pytest.raises(sa.SearchAttributeError, match="already declared"):
        declare(world, "cost")
    assert isinstance(world.conn, psycopg.Connection)
