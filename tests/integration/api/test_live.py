"""Live status over SSE, fed by the projector's Redis pub/sub: updates arrive as the read
model changes; a client that reconnects with Last-Event-ID misses nothing; another tenant's
executions never reach a stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx

from tests.integration.api.conftest import TEMPLATES, World, decisions, history
from tests.integration.api.sse import Event, events

DEADLINE = 30.0


async def next_event(it: AsyncIterator[Event]) -> Event:
    async with asyncio.timeout(DEADLINE):
        return await anext(it)


async def test_execution_stream_follows_a_running_execution(world: World) -> None:
    eid = sorted(world.running)[0]
    rest = world.running[eid]
    async with world.client("acme") as c, c.stream(
            "GET", f"/api/live/executions/{eid}") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        it = events(r)
        first = await next_event(it)
        assert first.event == "status" and first.data["execution_id"] == eid
        assert first.data["status"] != "succeeded" and int(first.id or 0) == first.data["last_seq"]
        seen = [first]
        for d in rest:  # the projector's writes and its pub/sub, one decision at a time
            await world.loader.apply([d])
        while seen[-1].data["status"] != "succeeded":
            seen.append(await next_event(it))
        ids = [int(e.id or 0) for e in seen]
        assert ids == sorted(set(ids)), "ids grow and never repeat"
        assert seen[-1].data["last_seq"] == rest[-1][-1].seq


async def test_reconnect_with_last_event_id_misses_nothing(world: World) -> None:
    eid = sorted(world.running)[1]
    rest = world.running[eid]
    async with world.client("acme") as c:
        async with c.stream("GET", f"/api/live/executions/{eid}") as r:
            first = await next_event(events(r))
        # while no one listens: the execution goes on and ends (nudges are lost)
        for d in rest:
            await world.loader.apply([d])
        async with c.stream("GET", f"/api/live/executions/{eid}",
                            headers={"Last-Event-ID": first.id or ""}) as r:
            resumed = await next_event(events(r))
        assert resumed.data["status"] == "succeeded"
        assert resumed.data["last_seq"] == rest[-1][-1].seq
        assert int(resumed.id or 0) > int(first.id or 0)
        # an up-to-date client gets nothing old again: the next event is a new one only
        async with c.stream("GET", f"/api/live/executions/{eid}",
                            headers={"Last-Event-ID": resumed.id or ""}) as r:
            it = events(r)
            try:
                async with asyncio.timeout(2.5):  # > api_live_poll_s: the poll ran too
                    extra = await anext(it)
                raise AssertionError(f"an old state was sent again: {extra}")
            except TimeoutError:
                pass
        r2 = await c.get(f"/api/live/executions/{eid}", headers={"Last-Event-ID": "x"})
        assert r2.status_code == 422


async def test_workflow_stream_only_the_callers_tenant(world: World) -> None:
    acme = decisions(history(TEMPLATES[0], "acme-live-wf", "acme", timedelta(hours=2)))
    zeta = decisions(history(TEMPLATES[0], "zeta-live-wf", "zeta", timedelta(hours=2)))
    async with world.client("acme") as c, c.stream(
            "GET", "/api/live/workflows/support-triage") as r:
        assert r.status_code == 200
        it = events(r)
        got: list[Event] = []
        for a, z in zip(acme, zeta, strict=False):
            await world.loader.apply([z])
            await world.loader.apply([a])
        while not got or got[-1].data["status"] != "succeeded":
            got.append(await next_event(it))
        assert {e.data["execution_id"] for e in got} == {"acme-live-wf"}
        assert all(e.data["tenant"] == "acme" for e in got)
        last_id = got[-1].id
    # resume after the end: the gap query returns nothing new of zeta, nothing repeated
    async with world.client("zeta") as c, c.stream(
            "GET", "/api/live/workflows/support-triage",
            params={"last_event_id": str(int(last_id or 0) - 60_000_000)}) as r:
        first = await next_event(events(r))
        assert first.data["execution_id"] == "zeta-live-wf"
        assert first.data["tenant"] == "zeta"


async def test_streams_of_another_tenant_are_404(world: World) -> None:
    async with world.client("acme") as c:
        assert (await c.get("/api/live/executions/zeta-000")).status_code == 404
        assert (await c.get("/api/live/workflows/zeta-private")).status_code == 404
    async with httpx.AsyncClient(base_url=world.url) as c:
        assert (await c.get("/api/live/executions/acme-000")).status_code == 401
