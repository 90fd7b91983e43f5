"""The command gateway over real HTTP: auth first (nothing published on 401/403), every
command an event on Kafka with who and why."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from flowlog.api.auth.bootstrap import auth_service
from flowlog.api.gateway.app import create_app
from flowlog.api.gateway.service import build_services
from flowlog.schemas.codec import Codec
from flowlog.schemas.topics import TopicCatalog
from flowlog.streams.runtime.kafka import ensure_topics

from flowlog.settings import Settings
from tests.integration.ingress.conftest import LiveServer

TOPICS = ("workflow-definitions", "triggers", "commands")


async def records(settings: Settings, base: str) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """Every record of a topic so far, with its headers."""
    topic = TopicCatalog.from_settings(settings).name(base)
    codec = Codec.from_settings(settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic)
                                                        or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out = []
        deadline = time.monotonic() + 30
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                out += [(codec.decode(m.value).record,
                         {k: v.decode() for k, v in m.headers}) for m in msgs]
        return out
    finally:
        await consumer.stop()


async def published(settings: Settings) -> int:
    return sum([len(await records(settings, t)) for t in TOPICS])


DEFINITION = {"id": "gw-wf", "nodes": {"a": {"type": "transform", "output": "inputs"}}}


@pytest.fixture
async def gw(ingress_settings: Settings, live: list[LiveServer]
             ) -> AsyncIterator[tuple[httpx.AsyncClient, Settings, dict[str, str]]]:
    settings = ingress_settings.model_copy(update={"auth_rate_per_s": 10_000.0,
                                                   "auth_rate_burst": 10_000.0})
    await asyncio.to_thread(ensure_topics, settings)
    keys = {}
    async with auth_service(settings) as svc:
        for name, tenant, role in (("admin", "acme", "admin"), ("op", "acme", "operator"),
                                   ("viewer", "acme", "viewer"), ("stranger", "zeta", "admin"),
                                   ("readonly-op", "acme", "operator")):
            scopes = ["workflows:read", "executions:read"] if name == "readonly-op" else None
            keys[name] = (await svc.create_key(tenant=tenant, role=role, name=name,
                                               scopes=scopes)).key
    server = LiveServer(create_app(lambda: build_services(settings))).start()
    live.append(server)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client, settings, keys


def as_(keys: dict[str, str], who: str) -> dict[str, str]:
    return {"X-API-Key": keys[who]}


async def test_refusals_publish_nothing(
        gw: tuple[httpx.AsyncClient, Settings, dict[str, str]]) -> None:
    client, settings, keys = gw
    r = await client.post("/workflows", json=DEFINITION)
    assert r.status_code == 401 and "credentials required" in r.json()["error"]
    r = await client.post("/workflows", json=DEFINITION, headers={"X-API-Key": "flk_x.y"})
    assert r.status_code == 401
    r = await client.post("/workflows", json=DEFINITION, headers=as_(keys, "op"))
    assert r.status_code == 403 and "needs admin" in r.json()["error"]
    assert await published(settings) == 0
    r = await client.post("/workflows", json=DEFINITION, headers=as_(keys, "admin"))
    assert r.status_code == 201, r.text
    before = await published(settings)
    for who, method, url, body in (
        ("viewer", "POST", "/workflows/gw-wf/execute", {"input": {}}),
        ("stranger", "POST", "/workflows/gw-wf/execute", {"input": {}}),
        ("readonly-op", "POST", "/workflows/gw-wf/execute", {"input": {}}),
        ("stranger", "POST", "/workflows/gw-wf/pause", {"reason": "x"}),
        ("op", "DELETE", "/workflows/gw-wf", None),
        ("stranger", "PUT", "/workflows/gw-wf", DEFINITION),
        ("viewer", "POST", "/executions/e1/cancel", {"workflow_id": "gw-wf"}),
        ("stranger", "POST", "/executions/e1/retry", {"workflow_id": "gw-wf", "node_id": "a"}),
    ):
        r = await client.request(method, url, json=body, headers=as_(keys, who))
        assert r.status_code == 403, (who, url, r.text)
    r = await client.post("/workflows/gw-wf/execute", json={})
    assert r.status_code == 401
    assert await published(settings) == before


async def test_commands_are_events_with_who_and_why(
        gw: tuple[httpx.AsyncClient, Settings, dict[str, str]]) -> None:
    client, settings, keys = gw
    admin, op = as_(keys, "admin"), as_(keys, "op")
    r = await client.post("/workflows?reason=first+version", json=DEFINITION, headers=admin)
    assert r.json() == {"workflow_id": "gw-wf", "version": 1, "changed": True}
    r = await client.post("/workflows", json=DEFINITION, headers=admin)
    assert r.status_code == 409
    r = await client.put("/workflows/gw-wf", json=DEFINITION, headers=admin)
    assert r.json()["changed"] is False  # same content: no new version
    changed = {**DEFINITION, "description": "v2"}
    r = await client.put("/workflows/gw-wf", content=orjson.dumps(changed),
                         headers={**admin, "content-type": "application/json"})
    assert r.json()["version"] == 2
    r = await client.post("/workflows", content=b"id: bad\nnodes: {a: {type: nope}}",
                          headers={**admin, "content-type": "application/yaml"})
    assert r.status_code == 422 and "unknown node type" in r.json()["issues"][0]
    assert (await client.post("/workflows/gw-wf/activate", json={"reason": "go"},
                              headers=op)).status_code == 202
    r = await client.post("/workflows/gw-wf/execute",
                          json={"input": {"x": 1}, "dedup_key": "k1", "reason": "smoke"},
                          headers=op)
    assert r.status_code == 202
    execution_id = r.json()["execution_id"]
    lines = b'{"x": 1}\n{"input": {"x": 2}, "dedup_key": "b2"}\n\n{"x": 3}\n'
    r = await client.post("/workflows/gw-wf/execute/bulk?reason=batch", content=lines,
                          headers=op)
    assert r.status_code == 202 and r.json()["accepted"] == 3
    r = await client.post("/workflows/gw-wf/execute/bulk", content=b'{"x": 1}\nnot json\n',
                          headers=op)
    assert r.status_code == 422 and r.json()["lines"][0].startswith("line 2")
    assert (await client.post(f"/executions/{execution_id}/cancel",
                              json={"workflow_id": "gw-wf", "reason": "wrong input"},
                              headers=op)).status_code == 202
    assert (await client.post(f"/executions/{execution_id}/retry",
                              json={"workflow_id": "gw-wf", "node_id": "a"},
                              headers=op)).status_code == 202
    assert (await client.post("/workflows/gw-wf/pause", json={"reason": "incident"},
                              headers=op)).status_code == 202
    assert (await client.delete("/workflows/gw-wf?reason=retired",
                                headers=admin)).status_code == 202
    assert (await client.post("/workflows/nope/execute", json={}, headers=op)
            ).status_code == 404

    defs = await records(settings, "workflow-definitions")
    assert [(r["event_type"], h["flowlog-actor"], h["flowlog-reason"]) for r, h in defs] == [
        ("WorkflowDefined", "key:admin", "first version"), ("WorkflowUpdated", "key:admin", ""),
        ("WorkflowActivated", "key:op", "go"), ("WorkflowPaused", "key:op", "incident"),
        ("WorkflowArchived", "key:admin", "retired")]
    assert all(r["tenant"] == "acme" for r, _ in defs)
    triggers = await records(settings, "triggers")
    assert len(triggers) == 4 and execution_id in {r["execution_id"] for r, _ in triggers}
    assert {h["flowlog-reason"] for _, h in triggers} == {"smoke", "batch"}
    commands = await records(settings, "commands")
    assert [(r["event_type"], r["reason"], h["flowlog-actor"]) for r, h in commands] == [
        ("CancelRequested", "wrong input", "key:op"), ("RetryNodeRequested", "", "key:op")]
    # (one execution: one partition, so in order)


async def test_openapi_is_served(gw: tuple[httpx.AsyncClient, Settings, dict[str, str]]
                                 ) -> None:
    client, _, _ = gw
    spec = (await client.get("/openapi.json")).json()
    assert {"/workflows", "/workflows/{workflow_id}/execute", "/executions/{execution_id}/cancel",
            "/workflows/{workflow_id}/execute/bulk", "/auth/token"} <= set(spec["paths"])
    assert (await client.get("/docs")).status_code == 200
