"""The query API over real PostgreSQL and Redis: every endpoint, filter, sort and page
boundary; GET only; authentication on every /api route."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.integration.api.conftest import ACME_N, ZETA_N, World


async def all_pages(client: httpx.AsyncClient, path: str, **params: Any) -> list[list[Any]]:
    pages = []
    cursor = None
    while True:
        r = await client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100


async def test_openapi_has_no_write_method(world: World) -> None:
    async with world.client() as c:
        doc = (await c.get("/openapi.json")).json()
    methods = {meth for ops in doc["paths"].values() for meth in ops}
    assert methods == {"get"}, methods
    assert len(doc["paths"]) >= 20


async def test_every_api_route_needs_credentials(world: World) -> None:
    async with world.client() as c:
        doc = (await c.get("/openapi.json")).json()
        for path in doc["paths"]:
            if not path.startswith("/api/"):
                continue
            url = path.replace("{trigger_index}", "1").replace("{version}", "1")
            url = url.replace("{execution_id}", "acme-000").replace("{workflow_id}", "x")
            r = await c.get(url)
            assert r.status_code == 401, (path, r.status_code, r.text)
            r = await c.get(url, headers={"X-API-Key": "flk_bogus.bogus"})
            assert r.status_code == 401, (path, r.status_code)


async def test_operations_endpoints(world: World) -> None:
    async with world.client() as c:
        assert (await c.get("/healthz")).status_code == 200
        r = await c.get("/readyz")
        assert r.status_code == 200 and r.json()["ready"] is True
        await c.get("/api/executions", headers=world.headers("acme"))
        text = (await c.get("/metrics")).text
        assert 'flowlog_http_request_seconds_count{method="GET",route="/api/executions"' in text


async def test_executions_list_default_sort_and_pages(world: World) -> None:
    async with world.client("acme") as c:
        for limit in (1, 5, ACME_N - 1, ACME_N, ACME_N + 1, 500):
            pages = await all_pages(c, "/api/executions", limit=limit)
            ids = [x["execution_id"] for p in pages for x in p]
            assert ids == sorted(world.executions["acme"], reverse=True), limit
            assert all(len(p) == limit for p in pages[:-1])
            assert 1 <= len(pages[-1]) <= limit
            assert len(pages) == -(-ACME_N // limit)  # exactly full pages: no empty last page
        for sort in ("created_at", "-created_at", "last_event_at", "-last_event_at"):
            pages = await all_pages(c, "/api/executions", limit=4, sort=sort)
            items = [x for p in pages for x in p]
            column = sort.lstrip("-")
            keys = [(x[column], x["execution_id"]) for x in items]
            assert keys == sorted(keys, reverse=sort.startswith("-")), sort
            assert len(items) == ACME_N


async def test_executions_filters(world: World) -> None:
    async with world.client("acme") as c:
        async def ids(**params: Any) -> list[str]:
            return [x["execution_id"] for p in await all_pages(c, "/api/executions", limit=3,
                                                               **params) for x in p]

        everything = (await c.get("/api/executions", params={"limit": 500})).json()["items"]
        by_wf: dict[str, set[str]] = {}
        for x in everything:
            by_wf.setdefault(x["workflow_id"], set()).add(x["execution_id"])
        assert len(by_wf) == 4
        for wf, expected in by_wf.items():
            assert set(await ids(workflow=wf)) == expected
        assert await ids(workflow="nope") == []
        running = {x["execution_id"] for x in everything if x["status"] != "succeeded"}
        assert running == {f"acme-{ACME_N - 2:03d}", f"acme-{ACME_N - 1:03d}"}
        assert set(await ids(status="succeeded")) == {x["execution_id"] for x in everything} \
            - running
        statuses = {x["status"] for x in everything} - {"succeeded"}
        assert set(await ids(status=sorted(statuses))) == running
        r = await c.get("/api/executions", params={"status": "bogus"})
        assert r.status_code == 422 and "status" in r.text
        sources = {x["trigger_source"] for x in everything}
        for src in sources:
            assert set(await ids(trigger_source=src)) == {
                x["execution_id"] for x in everything if x["trigger_source"] == src}
        times = sorted(datetime.fromisoformat(x["created_at"]) for x in everything)
        lo, hi = times[3], times[7]
        got = await ids(created_from=lo.isoformat(), created_to=hi.isoformat())
        assert set(got) == {x["execution_id"] for x in everything
                            if lo <= datetime.fromisoformat(x["created_at"]) < hi}
        assert len(got) == 4
        assert set(await ids(tenant="acme")) == set(world.executions["acme"])
        r = await c.get("/api/executions", params={"tenant": "zeta"})
        assert r.status_code == 403
        r = await c.get("/api/executions", params={"cursor": "garbage!"})
        assert r.status_code == 422 and "cursor" in r.text
    async with world.client("root") as c:
        r = await c.get("/api/executions", params={"limit": 500})
        assert len(r.json()["items"]) == ACME_N + ZETA_N
        r = await c.get("/api/executions", params={"limit": 500, "tenant": "zeta"})
        assert {x["tenant"] for x in r.json()["items"]} == {"zeta"}


async def test_execution_detail_timeline_outputs_incidents(world: World) -> None:
    async with world.client("acme") as c:
        for eid in world.executions["acme"][:4]:
            r = await c.get(f"/api/executions/{eid}")
            assert r.status_code == 200, r.text
            d = r.json()
            wf = (await c.get(f"/api/workflows/{d['workflow_id']}/versions/1")).json()
            nodes = set(wf["definition"]["nodes"])
            assert nodes <= {b["node_id"] for b in d["timeline"]}, "a node is missing"
            assert {r["node_id"] for r in d["node_run_rows"]} <= {b["node_id"]
                                                                  for b in d["timeline"]}
            assert d["events"][0]["seq"] == 1 and len(d["events"]) == d["last_seq"]
            assert d["status"] == "succeeded" and d["output"] is not None
            assert set(d["outputs"]) == {r["node_id"] for r in d["node_run_rows"]}
            runs = (await c.get(f"/api/executions/{eid}/node-runs")).json()
            assert runs == d["node_run_rows"]
        triage = (await c.get("/api/executions/acme-000")).json()
        assert triage["model_calls"] == 1 and triage["cost_usd"] > 0
        webhook = (await c.get("/api/executions/acme-002")).json()
        assert webhook["dead_letters"] >= 1 and webhook["retries"] >= 1
        assert (await c.get("/api/executions/nope")).status_code == 404


async def test_events_and_state_as_of_a_seq(world: World) -> None:
    async with world.client("acme") as c:
        eid = "acme-001"
        d = (await c.get(f"/api/executions/{eid}")).json()
        r = await c.get(f"/api/executions/{eid}/events", params={"limit": 5})
        first = r.json()
        assert [e["seq"] for e in first["items"]] == [1, 2, 3, 4, 5]
        assert first["next_cursor"] is not None
        rest = (await c.get(f"/api/executions/{eid}/events",
                            params={"after_seq": 5, "limit": 500})).json()
        assert rest["items"][0]["seq"] == 6 and rest["items"][-1]["seq"] == d["last_seq"]
        assert rest["next_cursor"] is None
        s1 = (await c.get(f"/api/executions/{eid}/state", params={"at": "1"})).json()
        assert s1["seq"] == 1 and s1["phase"] == "active", s1
        s_last = (await c.get(f"/api/executions/{eid}/state",
                              params={"at": str(d["last_seq"])})).json()
        assert s_last["phase"] == "succeeded"
        r = await c.get(f"/api/executions/{eid}/state", params={"at": "9999"})
        assert r.status_code == 422 and "past the end" in r.text
        r = await c.get(f"/api/executions/{eid}/state", params={"at": "yesterday"})
        assert r.status_code == 422
        h = (await c.get(f"/api/executions/{eid}/history")).json()
        assert len(h["events"]) == d["last_seq"]
        lin = (await c.get(f"/api/executions/{eid}/lineage")).json()
        assert lin["execution_id"] == eid and lin["caused"]
        ev_id = first["items"][1]["event_id"]
        lin = (await c.get(f"/api/executions/{eid}/lineage", params={"item": ev_id})).json()
        assert lin["item"] == ev_id and "caused_by" in lin
        other = (await c.get("/api/executions/acme-002/events", params={"limit": 1})).json()
        r = await c.get(f"/api/executions/{eid}/lineage",
                        params={"item": other["items"][0]["event_id"]})
        assert r.status_code == 404


async def test_node_runs_list(world: World) -> None:
    async with world.client("acme") as c:
        pages = await all_pages(c, "/api/node-runs", limit=7)
        items = [x for p in pages for x in p]
        keys = [(x["created_at"], x["execution_id"], x["node_id"], x["attempt"]) for x in items]
        assert keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys)
        assert {x["tenant"] for x in items} == {"acme"}
        types = {x["node_type"] for x in items if x["node_type"]}
        for t in types:
            got = [x for p in await all_pages(c, "/api/node-runs", node_type=t, limit=50)
                   for x in p]
            assert got and {x["node_type"] for x in got} == {t}
            assert len(got) == sum(1 for x in items if x["node_type"] == t)
        models = [x for p in await all_pages(c, "/api/node-runs", model="claude-3-5-haiku")
                  for x in p]
        assert models and all(x["model"] == "claude-3-5-haiku" for x in models)


async def test_workflows_triggers_webhooks_schedules(world: World) -> None:
    async with world.client("acme") as c:
        wfs = [x["workflow_id"] for p in await all_pages(c, "/api/workflows", limit=2) for x in p]
        assert wfs == sorted(wfs) and "zeta-private" not in wfs and len(wfs) == 4
        d = (await c.get("/api/workflows/support-triage")).json()
        assert [v["version"] for v in d["versions"]] == [1]
        assert (await c.get("/api/workflows/zeta-private")).status_code == 404
        assert (await c.get("/api/workflows/support-triage/versions/2")).status_code == 404
        trig = [x for p in await all_pages(c, "/api/triggers", limit=5) for x in p]
        assert len(trig) == ACME_N and {x["tenant"] for x in trig} == {"acme"}
        keys = [(x["received_at"], x["execution_id"]) for x in trig]
        assert keys == sorted(keys, reverse=True)
        only = (await c.get("/api/triggers", params={"outcome": "started",
                                                     "workflow": "batch-loop"})).json()
        assert {x["workflow_id"] for x in only["items"]} == {"batch-loop"}
        hooks = (await c.get("/api/webhooks")).json()
        assert [h["path"] for h in hooks] == ["hooks/support"]
        sch = (await c.get("/api/schedules")).json()
        assert [(x["workflow_id"], x["trigger_index"]) for x in sch] == [("batch-loop", 1)]
        slots = [x for p in await all_pages(c, "/api/schedules/batch-loop/1/slots", limit=2)
                 for x in p]
        assert len(slots) == 5 and [x["slot_at"] for x in slots] == sorted(
            [x["slot_at"] for x in slots], reverse=True)
        r = await c.get("/api/schedules/batch-loop/1/slots",
                        params={"from": "2025-01-02T00:00:00Z", "to": "2025-01-04T00:00:00Z"})
        assert len(r.json()["items"]) == 2
        assert (await c.get("/api/schedules/zeta-private/1/slots")).status_code == 404
    async with world.client("acme-nowf") as c:
        assert (await c.get("/api/workflows")).status_code == 403
        assert (await c.get("/api/executions")).status_code == 200


async def test_analytics(world: World) -> None:
    async with world.client("acme") as c:
        rng = {"from": "2025-01-06T00:00:00Z", "to": "2025-01-07T00:00:00Z"}
        r = await c.get("/api/analytics/executions", params={**rng, "bucket": "1h"})
        assert r.status_code == 200, r.text
        rows = r.json()["rows"]
        assert sum(x["executions"] for x in rows) == ACME_N
        assert sum(x["succeeded"] for x in rows) == ACME_N - 2
        assert all(x["failure_rate"] in (0, None) for x in rows)
        assert rows[0]["duration_p95_ms"] is not None
        g = (await c.get("/api/analytics/executions",
                         params={**rng, "bucket": "1d", "group_by": "workflow"})).json()
        assert len({x["group"] for x in g["rows"]}) == 4
        g = (await c.get("/api/analytics/executions",
                         params={**rng, "bucket": "1d", "group_by": "tenant"})).json()
        assert {x["group"] for x in g["rows"]} == {"acme"}
        n = (await c.get("/api/analytics/nodes",
                         params={**rng, "bucket": "1d", "group_by": "node_type"})).json()
        assert n["rows"] and sum(x["retries"] for x in n["rows"]) >= 1
        mm = (await c.get("/api/analytics/models",
                          params={**rng, "bucket": "1d", "group_by": "model"})).json()
        assert [x["group"] for x in mm["rows"]] == ["claude-3-5-haiku"]
        assert mm["rows"][0]["cost_usd"] > 0
        r = await c.get("/api/analytics/executions",
                        params={"from": "2020-01-01T00:00:00Z", "to": "2025-01-01T00:00:00Z",
                                "bucket": "1m"})
        assert r.status_code == 422 and "buckets" in r.text
        r = await c.get("/api/analytics/executions", params={"from": rng["to"], "to": rng["from"]})
        assert r.status_code == 422


@pytest.mark.parametrize("who", ["acme", "zeta"])
async def test_root_sees_both_tenants_in_analytics(world: World, who: str) -> None:
    rng = {"from": "2025-01-06T00:00:00Z", "to": "2025-01-07T00:00:00Z", "bucket": "1d"}
    async with world.client("root") as c:
        g = (await c.get("/api/analytics/executions", params={**rng, "group_by": "tenant"})
             ).json()
    assert {x["group"] for x in g["rows"]} == {"acme", "zeta"}
    async with world.client(who) as c:
        g = (await c.get("/api/analytics/executions", params={**rng, "group_by": "tenant"})
             ).json()
    assert {x["group"] for x in g["rows"]} == {who}
