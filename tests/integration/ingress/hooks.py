"""Shared set-up of the webhook tests: a definition, the registrar, the gateway, a reader."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from flowlog.api.webhooks import signing
from flowlog.api.webhooks.app import create_app
from flowlog.api.webhooks.service import build_gateway
from flowlog.schemas.codec import Codec
from flowlog.schemas.topics import TopicCatalog
from flowlog.streams.runtime import tools
from flowlog.streams.runtime.kafka import ensure_topics
from flowlog.streams.triggers.webhook_registrar import WebhookRegistrar

from flowlog.settings import Settings
from tests.integration.ingress.conftest import LiveServer

SECRET = "whsec-test-0123456789"


async def _secret(name: str) -> str:
    assert name == "HOOK", name
    return SECRET


def signed(body: bytes, *, ts: int | None = None, secret: str = SECRET) -> dict[str, str]:
    return {signing.SIGNATURE_HEADER: signing.sign(secret, ts or int(time.time()), body),
            "content-type": "application/json"}


def write_definition(folder: Path, workflow_id: str, triggers: list[dict[str, Any]],
                     nodes: dict[str, Any] | None = None,
                     outputs: dict[str, str] | None = None) -> Path:
    doc: dict[str, Any] = {"id": workflow_id, "secrets": ["HOOK"], "triggers": triggers,
                           "nodes": nodes or {"echo": {"type": "transform", "output": "inputs"}}}
    if outputs:
        doc["outputs"] = outputs
    path = folder / f"{workflow_id}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def wait_registered(settings: Settings, paths: set[str], within: float = 90.0) -> None:
    """Until every path is (or, for an empty set, no path of the prefix is) registered."""
    import psycopg

    deadline = time.monotonic() + within
    async with await psycopg.AsyncConnection.connect(
            settings.pg_dsn, autocommit=True,
            options=f"-c search_path={settings.pg_schema}") as conn:
        while True:
            cur = await conn.execute("SELECT path FROM webhook_registrations")
            have = {r[0] for r in await cur.fetchall()}
            if paths <= have and (paths or not have):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"registrations {have}, expected {paths}")
            await asyncio.sleep(0.1)


@asynccontextmanager
async def gateway_stack(settings: Settings, definition: Path, paths: set[str], *,
                        wait_results: bool = False) -> AsyncIterator[tuple[LiveServer, Any]]:
    """Definition applied and active, registrar running, gateway served on loopback."""
    await asyncio.to_thread(ensure_topics, settings)
    await asyncio.to_thread(tools.apply_definition, settings, definition)
    registrar = WebhookRegistrar(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(registrar.run(stop))
    try:
        await wait_registered(settings, paths)
        app = create_app(lambda: build_gateway(settings, secrets=_secret,
                                               wait_results=wait_results))
        server = LiveServer(app).start()
        try:
            yield server, registrar
        finally:
            server.stop()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def read_topic(settings: Settings, base: str = "triggers") -> list[dict[str, Any]]:
    """Every record of a catalog topic written so far (decoded)."""
    topic = TopicCatalog.from_settings(settings).name(base)
    codec = Codec.from_settings(settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            assert time.monotonic() < deadline, "could not read the topic to its end"
            batches = await consumer.getmany(timeout_ms=500)
            for msgs in batches.values():
                out += [codec.decode(m.value).record for m in msgs]
        return out
    finally:
        await consumer.stop()
