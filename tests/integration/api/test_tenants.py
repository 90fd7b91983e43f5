"""Tenant A never sees tenant B: every route of the served OpenAPI, called by acme with
zeta's ids (and with ?tenant=zeta), answers 403/404 or holds nothing of zeta."""

from __future__ import annotations

import pytest

from tests.integration.api.conftest import World

ZETA_IDS = {"{execution_id}": "zeta-001", "{workflow_id}": "zeta-private",
            "{trigger_index}": "1", "{version}": "1"}
SHARED_IDS = {"{execution_id}": "acme-001", "{workflow_id}": "support-triage",
              "{trigger_index}": "1", "{version}": "1"}
PARAMS = {"/api/executions/{execution_id}/state": {"at": "1"}}


def fill(path: str, ids: dict[str, str]) -> str:
    for k, v in ids.items():
        path = path.replace(k, v)
    return path


@pytest.mark.parametrize("ids", [ZETA_IDS, SHARED_IDS], ids=["zeta-ids", "shared-ids"])
async def test_acme_never_sees_zeta_on_any_route(world: World, ids: dict[str, str]) -> None:
    async with world.client("acme") as c:
        doc = (await c.get("/openapi.json")).json()
        paths = [p for p in doc["paths"] if p.startswith("/api/")]
        assert len(paths) >= 18
        checked = 0
        for path in paths:
            url = fill(path, ids)
            params = dict(PARAMS.get(path, {}))
            if path.startswith("/api/analytics/"):
                params.update({"from": "2025-01-01T00:00:00Z", "to": "2025-01-10T00:00:00Z",
                               "bucket": "1d"})
            if path.startswith("/api/live/"):
                if ids is SHARED_IDS:
                    continue  # streams of shared resources: tests/integration/api/test_live.py
                r = await c.get(url)
                assert r.status_code == 404, (path, r.status_code)
                checked += 1
                continue
            r = await c.get(url, params=params)
            assert r.status_code in (200, 404), (path, r.status_code, r.text[:300])
            if r.status_code == 200:
                assert "zeta" not in r.text, (path, r.text[:500])
            else:  # the 404 names what was asked for, nothing of zeta's data
                assert '"tenant":"zeta"' not in r.text and "hooks/zeta" not in r.text
            checked += 1
            if any(p["name"] == "tenant" for p in
                   doc["paths"][path]["get"].get("parameters", [])):
                r = await c.get(url, params={**params, "tenant": "zeta"})
                assert r.status_code == 403, (path, r.status_code)
                assert "zeta-0" not in r.text
        assert checked >= 18


async def test_zeta_sees_its_own(world: World) -> None:
    async with world.client("zeta") as c:
        r = await c.get("/api/executions/zeta-001")
        assert r.status_code == 200
        r = await c.get("/api/workflows/zeta-private")
        assert r.status_code == 200
        r = await c.get("/api/executions", params={"limit": 500})
        assert {x["tenant"] for x in r.json()["items"]} == {"zeta"}
        assert (await c.get("/api/executions/acme-001")).status_code == 404
        assert [h["path"] for h in (await c.get("/api/webhooks")).json()] == ["hooks/zeta"]
