"""Search attributes through the query API: declared and backfilled with the projections'
own code, then `attr.NAME` filters of GET /api/executions (equality, ranges, pages, tenant
scope) and GET /api/search-attributes (progress, scoped to the caller's tenants); bad
filters answer 400 naming the attribute and the fix."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flowlog.projections import search_attributes as sa
from flowlog.projections import search_attributes_store as store

from tests.integration.api.conftest import ACME_N, ZETA_N, World

ATTRS = {
    "priority": ("keyword", 'has(execution.input.priority) ? execution.input.priority : "none"'),
    "retries": ("int", 'events.filter(e, e.type == "NodeRetryScheduled").size()'),
    "cost": ("double", "execution.cost_usd"),
    "had_incident": ("bool", 'events.exists(e, e.type == "IncidentRaised")'),
    "started": ("datetime", "execution.created_at"),
}


@pytest.fixture(scope="module")
def declared(world: World) -> Iterator[dict[str, dict[str, Any]]]:
    """Every attribute declared and backfilled; their values by execution id."""
    conn = store.connect(world.settings.pg_dsn, world.schema)
    values: dict[str, dict[str, Any]] = {}
    for name, (type_, source) in ATTRS.items():
        store.declare(conn, sa.declaration(name, type_, source))
        store.backfill(conn, store.audit_source(world.loader.audit.store), name,
                       size=5)
        values[name] = dict(conn.execute(
            f"SELECT execution_id, {sa.COLUMN[type_]} FROM search_attribute_values "
            "WHERE attribute = %s", (name,)).fetchall())
    yield values
    for name in ATTRS:
        store.remove(conn, name)
    conn.close()


async def ids(world: World, who: str, params: Any, limit: int = 500) -> list[str]:
    out: list[str] = []
    cursor = None
    async with world.client(who) as c:
        while True:
            p = list(params) + [("limit", str(limit))] + ([("cursor", cursor)] if cursor else [])
            r = await c.get("/api/executions", params=p)
            assert r.status_code == 200, r.text
            body = r.json()
            out += [x["execution_id"] for x in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                return out


async def test_progress_listed_and_scoped(world: World, declared: Any) -> None:
    async with world.client("root") as c:
        r0 = await c.get("/api/search-attributes")
        rows = r0.json()
    assert isinstance(rows, list), r0.text
    assert [r["name"] for r in rows] == sorted(ATTRS)
    n = ACME_N + ZETA_N
    assert all((r["state"], r["done"], r["total"], r["errors"]) == ("ready", n, n, 0)
               for r in rows), rows
    async with world.client("acme") as c:
        rows = (await c.get("/api/search-attributes")).json()
        assert all((r["done"], r["total"]) == (ACME_N, ACME_N) for r in rows), rows
        assert (await c.get("/api/search-attributes", params={"tenant": "zeta"})
                ).status_code == 403


async def test_filters_return_exactly_the_matching_executions(world: World,
                                                              declared: Any) -> None:
    acme = set(world.executions["acme"])
    v = declared
    cases: list[tuple[list[tuple[str, str]], set[str]]] = [
        ([("attr.priority", "normal")], {e for e in acme if v["priority"][e] == "normal"}),
        ([("attr.priority", "none")], {e for e in acme if v["priority"][e] == "none"}),
        ([("attr.retries>", "1")], {e for e in acme if v["retries"][e] >= 1}),
        ([("attr.retries<", "0")], {e for e in acme if v["retries"][e] <= 0}),
        ([("attr.retries>0", "")], {e for e in acme if v["retries"][e] > 0}),
        ([("attr.had_incident", "true")], {e for e in acme if v["had_incident"][e]}),
        ([("attr.cost>", "0.000001"), ("attr.priority", "normal")],
         {e for e in acme if v["cost"][e] >= 0.000001 and v["priority"][e] == "normal"}),
    ]
    times = sorted(v["started"][e] for e in acme)
    mid = times[len(times) // 2]
    cases.append(([("attr.started>", mid.isoformat())],
                  {e for e in acme if v["started"][e] >= mid}))
    for params, expected in cases:
        assert 0 < len(expected) < len(acme) or params[0][0] in ("attr.retries<",), params
        got = await ids(world, "acme", params)
        assert len(got) == len(set(got)) and set(got) == expected, (params, got, expected)
        # pages of 2 give the same executions, in order
        assert await ids(world, "acme", params, limit=2) == got
    every = {e for t in world.executions.values() for e in t}
    got = await ids(world, "root", [("attr.had_incident", "true")])
    assert set(got) == {e for e in every if v["had_incident"][e]}
    assert any(e.startswith("zeta") for e in got)


async def test_bad_filters_answer_400_naming_the_attribute(world: World,
                                                           declared: Any) -> None:
    async with world.client("acme") as c:
        for params, words in (
            ({"attr.nope": "1"}, ["'nope'", "search-attributes"]),
            ({"attr.retries": "many"}, ["'retries'", "int", "attr.retries=3"]),
            ({"attr.priority>": "a"}, ["'priority'", "keyword", "attr.priority=value"]),
            ({"attr.had_incident": "maybe"}, ["had_incident", "true"]),
            ({"attr.started": "yesterday"}, ["started", "datetime"]),
        ):
            r = await c.get("/api/executions", params=params)
            assert r.status_code == 400, (params, r.text)
            detail = r.json()["detail"]
            assert all(w in detail for w in words), (params, detail)


async def test_a_tenant_never_gets_another_tenants_execution_by_attribute(
        world: World, declared: Any) -> None:
    for who, other in (("acme", "zeta"), ("zeta", "acme")):
        for params in ([("attr.had_incident", "true")], [("attr.retries>", "0")],
                       [("attr.priority", "none")]):
            got = await ids(world, who, params)
            assert got and not any(e.startswith(other) for e in got)
