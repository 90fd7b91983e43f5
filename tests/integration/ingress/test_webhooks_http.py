"""The webhook gateway over real HTTP on loopback, with Kafka, PostgreSQL and Redis.

Every refusal is checked to publish nothing: the triggers topic is read to its end.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from flowlog.api.auth.bootstrap import auth_service
from flowlog.schemas.ids import execution_id_for

from flowlog.settings import Settings
from tests.integration.ingress.hooks import (
    gateway_stack,
    read_topic,
    signed,
    wait_registered,
    write_definition,
)


@pytest.fixture
async def stack(ingress_settings: Settings, tmp_path: Path, unique_id: str
                ) -> AsyncIterator[tuple[httpx.AsyncClient, Settings, str]]:
    wf = f"hooked-{unique_id}"
    base = f"t{unique_id}"
    triggers = [
        {"type": "webhook", "path": f"{base}/orders", "secret": "${secret:HOOK}",
         "headers": {"X-Source": "shop"}, "max_body": 2048,
         "input": '{"order": body.order, "source": headers["x-source"]}'},
        {"type": "webhook", "path": f"{base}/slow", "secret": "${secret:HOOK}",
         "rate_limit": {"per_ip": 2}},
        {"type": "webhook", "path": f"{base}/keyed"},
        {"type": "webhook", "path": f"{base}/walled", "secret": "${secret:HOOK}",
         "allow_ips": ["10.0.0.0/8"]},
        {"type": "webhook", "path": f"{base}/dedup", "secret": "${secret:HOOK}",
         "dedup": "body.id"},
    ]
    paths = {t["path"] for t in triggers}
    definition = write_definition(tmp_path, wf, triggers)
    async with gateway_stack(ingress_settings, definition, paths) as (server, _):
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            yield client, ingress_settings, base


def body_of(**fields: Any) -> bytes:
    return orjson.dumps(fields)


async def test_good_signature_gives_202_and_exactly_one_trigger(
        stack: tuple[httpx.AsyncClient, Settings, str]) -> None:
    client, settings, base = stack
    body = body_of(order={"id": 7, "total": 12.5})
    r = await client.post(f"/hooks/{base}/orders", content=body,
                          headers={**signed(body), "X-Source": "shop"})
    assert r.status_code == 202, r.text
    execution_id = r.json()["execution_id"]
    triggers = await read_topic(settings)
    assert [t["execution_id"] for t in triggers] == [execution_id]
    assert triggers[0]["source"] == "webhook"
    assert orjson.loads(triggers[0]["input"]) == {"order": {"id": 7, "total": 12.5},
                                                  "source": "shop"}


async def test_bad_missing_or_stale_signatures_are_401_and_publish_nothing(
        stack: tuple[httpx.AsyncClient, Settings, str]) -> None:
    client, settings, base = stack
    body = body_of(order={"id": 1})
    url = f"/hooks/{base}/orders"
    cases = {
        "wrong secret": signed(body, secret="not-the-secret"),
        "missing": {"content-type": "application/json"},
        "malformed": {"x-flowlog-signature": "v1=abc"},
        "stale": signed(body, ts=int(time.time()) - 3600),
        "future": signed(body, ts=int(time.time()) + 3600),
        "other body": signed(body_of(order={"id": 2})),
    }
    for case, headers in cases.items():
        r = await client.post(url, content=body, headers={**headers, "X-Source": "shop"})
        assert r.status_code == 401, (case, r.text)
    r = await client.post(url, content=body, headers={**cases["stale"], "X-Source": "shop"})
    assert "outside the tolerance" in r.json()["error"]
    assert await read_topic(settings) == []


async def test_replayed_signed_request_is_refused(
        stack: tuple[httpx.AsyncClient, Settings, str]) -> None:
    client, settings, base = stack
    body = body_of(order={"id": 3})
    headers = {**signed(body), "X-Source": "shop"}
    first = await client.post(f"/hooks/{base}/orders", content=body, headers=headers)
    again = await client.post(f"/hooks/{base}/orders", content=body, headers=headers)
    assert first.status_code == 202
    assert again.status_code == 409 and "replay" in again.json()["error"]
    assert len(await read_topic(settings)) == 1


async def test_oversize_malformed_headers_and_ip_checks(
        stack: tuple[httpx.AsyncClient, Settings, str]) -> None:
    client, settings, base = stack
    big = body_of(order={"blob": "x" * 4096})
    r = await client.post(f"/hooks/{base}/orders", content=big,
                          headers={**signed(big), "X-Source": "shop"})
    assert r.status_code == 413 and "2048 bytes" in r.json()["error"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(10):
            yield b"x" * 512

    r = await client.post(f"/hooks/{base}/orders", content=chunks(),
                          headers={"X-Source": "shop"})
    assert r.status_code == 413
    bad = b'{"order": {"id": 1,}'
    r = await client.post(f"/hooks/{base}/orders", content=bad,
                          headers={**signed(bad), "X-Source": "shop"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    ok = body_of(order={"id": 1})
    r = await client.post(f"/hooks/{base}/orders", content=ok,
                          headers={**signed(ok), "X-Source": "elsewhere"})
    assert r.status_code == 403 and "x-source must be 'shop'" in r.json()["error"]
    r = await client.post(f"/hooks/{base}/walled", content=ok, headers=signed(ok))
    assert r.status_code == 403 and "allow_ips" in r.json()["error"]
    r = await client.post(f"/hooks/{base}/nowhere", content=ok, headers=signed(ok))
    assert r.status_code == 404
    r = await client.post(f"/hooks/{base}/orders", content=b'[1]',
                          headers={**signed(b'[1]'), "X-Source": "shop"})
    assert r.status_code == 422 and "input expression failed" in r.json()["error"], r.text
    assert await read_topic(settings) == []


async def test_rate_limit_answers_429_with_retry_after(
        stack: tuple[httpx.AsyncClient, Settings, str]) -> None:
    client, settings, base = stack
    codes = []
    for i in range(4):
        body = body_of(n=i)
        r = await client.post(f"/hooks/{base}/slow", content=body, headers=signed(body))
        codes.append(r)
    assert [r.status_code for r in codes[:2]] == [202, 202]
    limited = [r for r in codes if r.status_code == 429]
    assert limited and int(limited[0].headers["retry-after"]) >= 1
    assert len(await read_topic(settings)) == 4 - len(limited)


async def test_idempotency_key_and_dedup_expression_give_one_execution(
        stack: tuple[httpx.AsyncClient, Settings, str]) -> None:
    client, settings, base = stack
    ids = []
    for i in range(2):
        body = body_of(order={"id": 9, "attempt": i})
        r = await client.post(f"/hooks/{base}/orders", content=body,
                              headers={**signed(body), "X-Source": "shop",
                                       "Idempotency-Key": "order-9"})
        assert r.status_code == 202, r.text
        ids.append(r.json()["execution_id"])
    wf = f"hooked-{base[1:]}"
    assert ids[0] == ids[1] == execution_id_for(wf, "webhook:order-9")
    triggers = await read_topic(settings)
    assert [t["execution_id"] for t in triggers] == [ids[0]]  # the second published nothing
    for i in range(2):  # the dedup expression: the same body id, the same execution
        body = body_of(id="evt-1", n=i)
        r = await client.post(f"/hooks/{base}/dedup", content=body, headers=signed(body))
        ids.append(r.json()["execution_id"])
    assert ids[2] == ids[3] == execution_id_for(wf, "webhook:evt-1")


async def test_a_webhook_without_secret_needs_an_api_key_of_its_tenant(
        stack: tuple[httpx.AsyncClient, Settings, str]) -> None:
    client, settings, base = stack
    async with auth_service(settings) as svc:
        good = await svc.create_key(tenant="default", role="operator")
        viewer = await svc.create_key(tenant="default", role="viewer")
        other = await svc.create_key(tenant="other", role="operator")
    url = f"/hooks/{base}/keyed"
    assert (await client.post(url, json={"a": 1})).status_code == 401
    r = await client.post(url, json={"a": 1}, headers={"X-API-Key": viewer.key})
    assert r.status_code == 403
    r = await client.post(url, json={"a": 1}, headers={"X-API-Key": other.key})
    assert r.status_code == 403 and "not 'default'" in r.json()["error"]
    assert await read_topic(settings) == []
    r = await client.post(url, json={"a": 1}, headers={"X-API-Key": good.key})
    assert r.status_code == 202
    assert len(await read_topic(settings)) == 1


async def test_pausing_the_workflow_removes_its_webhooks(
        ingress_settings: Settings, tmp_path: Path, unique_id: str) -> None:
    from flowlog.schemas.events import WorkflowPaused
    from flowlog.schemas.sdk import EventProducer

    wf = f"paused-{unique_id}"
    path = f"t{unique_id}/p"
    definition = write_definition(tmp_path, wf, [{"type": "webhook", "path": path,
                                                  "secret": "${secret:HOOK}"}])
    async with gateway_stack(ingress_settings, definition, {path}) as (server, _):
        with EventProducer.from_settings(ingress_settings) as producer:
            producer.publish_sync(WorkflowPaused(workflow_id=wf, workflow_version=1,
                                                 reason="test"))
        await wait_registered(ingress_settings, set())
        async with httpx.AsyncClient(base_url=server.url) as client:
            body = b"{}"
            deadline = time.monotonic() + 10  # the gateway re-reads every webhook_refresh_s
            while True:
                r = await client.post(f"/hooks/{path}", content=body, headers=signed(body))
                if r.status_code == 404 or time.monotonic() > deadline:
                    break
        assert r.status_code == 404 and "is its workflow active" in r.json()["error"]


async def test_readyz(stack: tuple[httpx.AsyncClient, Settings, str]) -> None:
    client, _, _ = stack
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json()["webhooks"] == 5
    assert (await client.get("/openapi.json")).status_code == 200

