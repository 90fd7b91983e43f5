"""The dashboard in headless Chromium (Debian's `chromium`, driven by Playwright; `make
browser` installs it, `make dashboard` builds the assets): it lists an execution, the
timeline shows every node, a running execution updates without a reload, the analytics
charts render, and the console stays free of errors. Screenshots: tests/artifacts/."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.api.conftest import REPO, World

ARTIFACTS = REPO / "tests" / "artifacts"
STATIC = REPO / "api" / "query" / "static" / "index.html"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def built() -> Path:
    # the assets `make dashboard` builds (make test depends on it); built here when missing
    if not STATIC.exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed: the dashboard cannot be built")
        subprocess.run(["make", "-s", "dashboard"], cwd=REPO, check=True, timeout=600)
    return STATIC


@pytest.fixture
async def page(world: World, built: Path) -> Any:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (make browser installs Debian's chromium)")
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                           args=["--no-sandbox", "--disable-gpu"])
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        pg = await context.new_page()
        errors: list[str] = []
        pg.on("console", lambda m: errors.append(f"console: {m.text}")
              if m.type == "error" else None)
        pg.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        pg.errors = errors  # type: ignore[attr-defined]
        try:
            yield pg
        finally:
            await browser.close()


async def wait_ready(page: Any, path: str) -> None:
    await page.wait_for_function(f"document.body.dataset.ready === {path!r}", timeout=30_000)


async def test_dashboard(world: World, page: Any) -> None:
    base = f"{world.url}/dashboard/?key={world.keys['acme']}"
    # the executions list
    await page.goto(base + "#/executions")
    await wait_ready(page, "/executions")
    rows = await page.locator("#executions tbody tr").count()
    assert rows == len(world.executions["acme"])  # every acme execution, none of zeta
    assert await page.locator("tr[data-id='acme-000']").count() == 1
    assert await page.locator("tr[data-id^='zeta']").count() == 0
    await page.screenshot(path=str(ARTIFACTS / "dashboard-executions.png"), full_page=True)
    # a filter
    await page.select_option("select[name=status]", "succeeded")
    await page.click("#filters button[type=submit]")
    await page.wait_for_function(
        "document.querySelectorAll('#executions tbody tr').length === "
        f"{len(world.executions['acme']) - len(world.running)}", timeout=30_000)

    # an execution's timeline shows every node of its workflow
    await page.click("a[href='#/executions/acme-000']")
    await wait_ready(page, "/executions/acme-000")
    labels = await page.evaluate("window.flowlogCharts.timeline.data.labels")
    async with world.client("acme") as c:
        d = (await c.get("/api/executions/acme-000")).json()
        wf = (await c.get(f"/api/workflows/{d['workflow_id']}/versions/1")).json()
    assert set(wf["definition"]["nodes"]) <= {label.split(" #")[0] for label in labels}
    assert len(labels) == len(d["timeline"])
    await page.screenshot(path=str(ARTIFACTS / "dashboard-detail.png"), full_page=True)

    # a running execution updates without a reload
    eid = sorted(world.running)[0]
    await page.goto(base + f"#/executions/{eid}")
    await wait_ready(page, f"/executions/{eid}")
    assert "succeeded" not in await page.inner_text("#status")
    await page.evaluate("window.__noReload = true")
    for d_ in world.running[eid]:
        await world.loader.apply([d_])
    await page.wait_for_function(
        "document.querySelector('#status') && "
        "document.querySelector('#status').innerText.includes('succeeded')", timeout=30_000)
    assert await page.evaluate("window.__noReload === true"), "the page was reloaded"
    labels = await page.evaluate("window.flowlogCharts.timeline.data.labels")
    assert len(labels) >= 2
    await page.screenshot(path=str(ARTIFACTS / "dashboard-live.png"), full_page=True)

    # the analytics charts render, with data
    await page.goto(base + "#/analytics?from=2025-01-06T00:00:00Z&to=2025-01-07T00:00:00Z"
                    "&bucket=1h")
    await wait_ready(page, "/analytics")
    for name in ("throughput", "failure", "p95", "cost"):
        points = await page.evaluate(
            f"window.flowlogCharts[{name!r}].data.datasets.flatMap(d => d.data)"
            ".filter(v => v !== null && v !== undefined).length")
        assert points > 0, name
        box = await page.locator(f"#chart-{name}").bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 50
    await asyncio.sleep(0)  # let pending console messages arrive
    await page.screenshot(path=str(ARTIFACTS / "dashboard-analytics.png"), full_page=True)
    assert page.errors == [], page.errors
