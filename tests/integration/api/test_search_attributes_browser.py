"""The dashboard's search attribute filter in headless Chromium: `retries>=1` in the
executions list shows exactly the caller's executions with a retry."""

from __future__ import annotations

from typing import Any

from flowlog.projections import search_attributes as sa
from flowlog.projections import search_attributes_store as store

from tests.integration.api.conftest import World
from tests.integration.api.test_dashboard_browser import (  # noqa: F401
    ARTIFACTS,
    built,
    page,
    wait_ready,
)


async def test_filter_by_search_attribute(world: World, page: Any) -> None:  # noqa: F811
    conn = store.connect(world.settings.pg_dsn, world.schema)
    try:
        store.declare(conn, sa.declaration(
            "retries", "int", 'events.filter(e, e.type == "NodeRetryScheduled").size()'))
        store.backfill(conn, store.audit_source(world.loader.audit.store), "retries")
        expected = {r[0] for r in conn.execute(
            "SELECT v.execution_id FROM search_attribute_values v JOIN workflow_executions x "
            "USING (execution_id) WHERE v.attribute = 'retries' AND v.v_int >= 1 "
            "AND x.tenant = 'acme'")}
    finally:
        conn.close()
    assert 0 < len(expected) < len(world.executions["acme"])
    await page.goto(f"{world.url}/dashboard/?key={world.keys['acme']}#/executions")
    await wait_ready(page, "/executions")
    await page.fill("input[name=attr]", "retries>=1")
    await page.click("#filters button[type=submit]")
    await page.wait_for_function(
        f"document.querySelectorAll('#executions tbody tr').length === {len(expected)}",
        timeout=30_000)
    shown = set(await page.eval_on_selector_all("#executions tbody tr",
                                                "rows => rows.map(r => r.dataset.id)"))
    assert shown == expected
    await page.screenshot(path=str(ARTIFACTS / "dashboard-search-attribute.png"),
                          full_page=True)
    assert page.errors == []
