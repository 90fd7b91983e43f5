"""Webhooks into the running engine: a result waited for over HTTP; one Idempotency-Key,
one execution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
from flowlog.streams.runtime import tools

from tests.e2e.conftest import Engine, events_of
from tests.integration.ingress.conftest import migrate
from tests.integration.ingress.hooks import gateway_stack, read_topic, signed, write_definition


async def test_wait_for_result_and_idempotent_deliveries(
        engine: Engine, pg_schema: str, redis_url: str, tmp_path: Path, unique_id: str
) -> None:
    settings = engine.settings.model_copy(update={"pg_schema": pg_schema})
    migrate(settings, pg_schema)
    wf = f"hook-e2e-{unique_id}"
    path = f"t{unique_id}/orders"
    definition = write_definition(
        tmp_path, wf,
        [{"type": "webhook", "path": path, "secret": "${secret:HOOK}",
          "input": '{"total": body.total}'}],
        nodes={"double": {"type": "transform", "output": '{"doubled": inputs.total * 2.0}'}},
        outputs={"doubled": "nodes.double.output.doubled"})
    async with gateway_stack(settings, definition, {path}, wait_results=True) as (server, _):
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            body = orjson.dumps({"total": 21.0})
            r = await client.post(f"/hooks/{path}?wait=30", content=body, headers=signed(body))
            assert r.status_code == 200, r.text
            result: dict[str, Any] = r.json()
            assert result["status"] == "succeeded"
            assert result["output"] == {"doubled": 42.0}, result

            ids = []
            for attempt in range(2):
                body = orjson.dumps({"total": float(attempt)})
                r = await client.post(f"/hooks/{path}", content=body,
                                      headers={**signed(body), "Idempotency-Key": "pay-1"})
                assert r.status_code == 202, r.text
                ids.append(r.json()["execution_id"])
    assert ids[0] == ids[1]
    events = await engine.wait(ids[0])
    assert len(events_of(events, "ExecutionStarted")) == 1
    assert sum(t["execution_id"] == ids[0] for t in await read_topic(settings)) == 1
    assert (await tools.collect(settings, result["execution_id"]))[-1]["event_type"] == \
        "ExecutionSucceeded"


async def test_wait_gives_up_with_202_running(
        engine: Engine, pg_schema: str, redis_url: str, tmp_path: Path, unique_id: str
) -> None:
    settings = engine.settings.model_copy(update={"pg_schema": pg_schema})
    migrate(settings, pg_schema)
    path = f"t{unique_id}/slow"
    definition = write_definition(
        tmp_path, f"hook-slow-{unique_id}",
        [{"type": "webhook", "path": path, "secret": "${secret:HOOK}"}],
        nodes={"pause": {"type": "delay", "duration": "60s"}})
    async with gateway_stack(settings, definition, {path}, wait_results=True) as (server, _):
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            body = b"{}"
            r = await client.post(f"/hooks/{path}", content=body,
                                  headers={**signed(body), "Prefer": "wait=1"})
    assert r.status_code == 202 and r.json()["status"] == "running", r.text
    assert r.json()["waited_s"] == 1.0
