"""Every list query uses an index: the API serves 100,000 executions (and as many node runs
and triggers) and each list query it runs, for every filter and sort, is EXPLAINed with its
own parameters; no plan reads a whole table (no Seq Scan on the list's table)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from flowlog.api.auth.bootstrap import auth_service
from flowlog.api.query.app import create_app
from flowlog.api.query.services import Services, build_services
from flowlog.projections.fold import Coords, FoldResult, Rows, fold_record
from flowlog.projections.readmodel import write_rows

from flowlog.settings import Settings
from tests.integration.api.conftest import TEMPLATES, Loader, decisions, history
from tests.integration.ingress.conftest import LiveServer

N = 100_000
TENANTS = 50
STATUSES = ["succeeded"] * 6 + ["failed", "running", "waiting", "cancelled"]
SOURCES = ["webhook", "schedule", "manual", "event"]
LIST_TABLES = ("workflow_executions", "node_runs", "triggers", "workflows",
               "webhook_registrations", "schedules", "schedule_slots")


class ExplainingPool:
    """The app's pool, but every `fetch` (the list queries) is EXPLAINed first."""

    def __init__(self, pool: Any, plans: list[tuple[str, Any]]) -> None:
        self.pool = pool
        self.plans = plans

    async def fetch(self, sql: str, *args: Any) -> Any:
        plan = await self.pool.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
        self.plans.append((sql, json.loads(plan) if isinstance(plan, str) else plan))
        return await self.pool.fetch(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)


def nodes(plan: Any) -> list[dict[str, Any]]:
    out = []
    stack = [plan[0]["Plan"]]
    while stack:
        n = stack.pop()
        out.append(n)
        stack += n.get("Plans", [])
    return out


async def load(settings: Settings, schema: str) -> None:
    loader = await Loader(settings, schema).start()
    try:
        rows, result = Rows(), FoldResult()
        for d in decisions(history(TEMPLATES[0], "base", "t0", timedelta(0))):
            fold_record(rows, d, Coords("x", 0, 0), result)
        base = rows.executions["base"]
        runs = [r for k, r in rows.node_runs.items()]
        xs, nrs, trs = [], [], []
        for i in range(N):
            eid = f"x{i:06d}"
            created = base["created_at"] + timedelta(seconds=i)
            tenant = f"t{i % TENANTS}"
            xs.append(dict(base, execution_id=eid, tenant=tenant, workflow_id=f"wf{i % 20}",
                           status=STATUSES[i % len(STATUSES)],
                           trigger_source=SOURCES[i % len(SOURCES)], created_at=created,
                           last_event_at=created + timedelta(seconds=7)))
            run = runs[i % len(runs)]
            nrs.append(dict(run, execution_id=eid, tenant=tenant, created_at=created))
            trs.append({"trigger_id": f"tr{i}", "execution_id": eid, "workflow_id":
                        f"wf{i % 20}", "workflow_version": 1, "tenant": tenant,
                        "source": SOURCES[i % 4], "dedup_key": None, "input": None,
                        "outcome": "started", "reason": None, "received_at": created})
        conn = loader.rm.conn
        assert conn is not None
        async with conn.transaction():
            for table, batch in (("workflow_executions", xs), ("node_runs", nrs),
                                 ("triggers", trs)):
                for k in range(0, N, 20_000):
                    await write_rows(conn, table, batch[k:k + 20_000])
        # search attributes: a keyword and a double on every execution
        await conn.execute("INSERT INTO search_attributes (name, type, expression, state) "
                           "VALUES ('tier', 'keyword', '\"x\"', 'ready'), "
                           "('cost', 'double', '1.0', 'ready')")
        tiers = ["gold", "silver", "bronze", "iron", "wood", "tin", "lead"]
        await conn.copy_records_to_table(
            "search_attribute_values",
            columns=["attribute", "execution_id", "last_seq", "v_keyword", "v_double"],
            records=[r for i in range(N) for r in (
                ("tier", f"x{i:06d}", 1, tiers[i % 7], None),
                ("cost", f"x{i:06d}", 1, None, i / 1000))])
        await conn.execute("ANALYZE")
    finally:
        await loader.close()


@pytest.mark.timeout(900)
async def test_every_list_query_uses_an_index(settings: Settings, pg_schema: str,
                                              redis_url: str) -> None:
    from flowlog.projections.migrate import migrate

    await asyncio.to_thread(migrate, settings, pg_schema)
    settings = settings.model_copy(update={"pg_schema": pg_schema, "auth_rate_per_s": 1e6,
                                           "auth_rate_burst": 1e6})
    await load(settings, pg_schema)
    plans: list[tuple[str, Any]] = []

    @asynccontextmanager
    async def services() -> AsyncIterator[Services]:
        async with build_services(settings, pg_schema) as s:
            s.pool = ExplainingPool(s.pool, plans)  # type: ignore[assignment]
            yield s

    async with auth_service(settings, pg_schema) as svc:
        tenant_key = (await svc.create_key(tenant="t7", role="viewer")).key
        root_key = (await svc.create_key(tenant="*", role="admin")).key
    import httpx

    with LiveServer(create_app(services)) as server:
        calls = [("/api/executions", {}), ("/api/executions", {"sort": "created_at"}),
                 ("/api/executions", {"sort": "-last_event_at"}),
                 ("/api/executions", {"sort": "last_event_at"}),
                 ("/api/executions", {"workflow": "wf7"}),
                 ("/api/executions", {"status": "failed"}),
                 ("/api/executions", {"status": ["failed", "cancelled"]}),
                 ("/api/executions", {"trigger_source": "schedule"}),
                 ("/api/executions", {"created_from": "2025-01-06T12:00:00Z",
                                      "created_to": "2025-01-06T13:00:00Z"}),
                 ("/api/executions", {"workflow": "wf7", "status": "succeeded",
                                      "sort": "last_event_at"}),
                 ("/api/executions", {"attr.tier": "gold"}),
                 ("/api/executions", {"attr.cost>": "99.5"}),
                 ("/api/executions", {"attr.cost<": "0.5", "attr.tier": "tin"}),
                 ("/api/executions", {"attr.tier": "gold", "status": "failed",
                                      "sort": "last_event_at"}),
                 ("/api/search-attributes", {}),
                 ("/api/node-runs", {}), ("/api/node-runs", {"node_type": "agent"}),
                 ("/api/node-runs", {"workflow": "wf3"}),
                 ("/api/node-runs", {"model": "claude-3-5-haiku"}),
                 ("/api/node-runs", {"status": "succeeded"}), ("/api/triggers", {}),
                 ("/api/triggers", {"source": "schedule"}),
                 ("/api/triggers", {"outcome": "started"}),
                 ("/api/triggers", {"workflow": "wf3"}), ("/api/workflows", {}),
                 ("/api/webhooks", {}), ("/api/schedules", {})]
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
            for key in (tenant_key, root_key):
                for path, params in calls:
                    r = await c.get(path, params=params, headers={"X-API-Key": key})
                    assert r.status_code == 200, (path, r.text)
                    body = r.json()
                    cursor = body.get("next_cursor") if isinstance(body, dict) else None
                    if cursor:  # the second page's keyset query too
                        r = await c.get(path, params={**params, "cursor": cursor},
                                        headers={"X-API-Key": key})
                        assert r.status_code == 200
    assert len(plans) >= 2 * len(calls)
    bad = []
    for sql, plan in plans:
        ns = nodes(plan)
        table = next((t for t in LIST_TABLES if f"FROM {t}" in sql), None)
        seq = [n for n in ns if n["Node Type"] == "Seq Scan"
               and n.get("Relation Name") in ("workflow_executions", "node_runs", "triggers",
                                              "search_attribute_values")]
        if seq or (not any("Index" in n["Node Type"] for n in ns) and table in (
                "workflow_executions", "node_runs", "triggers")):
            bad.append((sql, [n["Node Type"] + ":" + str(n.get("Relation Name")) for n in ns]))
    assert not bad, "\n".join(f"{s}\n  {p}" for s, p in bad)
