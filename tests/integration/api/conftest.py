"""Query API test harness: read models filled through the projections' own code (the pure
fold, then the read-model and analytics projectors' write functions and the rollup job; the
audit projector's `apply` for the audit store), the API served by uvicorn on loopback, API
keys of two tenants and an all-tenants admin."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from flowlog.aggregates import records
from flowlog.aggregates.definition.parse import parse_text
from flowlog.aggregates.execution.events import ExecutionEvent, event_from_dict
from flowlog.api.auth.bootstrap import auth_service
from flowlog.api.query.service import make_app
from flowlog.projections.analytics import AnalyticsProjector, run_rollups
from flowlog.projections.definitions import DefinitionChanges, Definitions, apply_definition
from flowlog.projections.fold import Coords, FoldResult, Rows, fold_record
from flowlog.projections.live import LivePublisher, StatusChange
from flowlog.projections.migrate import migrate
from flowlog.projections.readmodel import ReadModelProjector, Work
from flowlog.schemas.codec import Codec
from flowlog.schemas.ids import flowlog_uuid5

from flowlog.settings import Settings
from tests.integration.ingress.conftest import LiveServer

REPO = Path(__file__).resolve().parents[3]
HISTORIES = REPO / "tests" / "fixtures" / "histories"
TEMPLATES = ("support_triage_billing", "batch_loop", "webhook_dead_letter_then_retry",
             "delay_and_wait_approved")


def template(name: str) -> tuple[list[ExecutionEvent], dict[str, Any]]:
    doc = json.loads((HISTORIES / f"{name}.json").read_text())
    definition = parse_text((REPO / doc["definition"]).read_text(), filename=doc["definition"])
    return [event_from_dict(e) for e in doc["events"]], definition


def history(name: str, execution_id: str, tenant: str, shift: timedelta,
            workflow_id: str | None = None) -> list[ExecutionEvent]:
    """A recorded history under a new execution id, tenant, time (and workflow)."""
    events, _ = template(name)
    out = []
    for e in events:
        changes: dict[str, Any] = {"execution_id": execution_id,
                                   "event_id": flowlog_uuid5(f"{execution_id}:{e.seq}"),
                                   "occurred_at": e.occurred_at + shift}
        names = {f.name for f in dataclasses.fields(e)}
        if "tenant" in names:
            changes["tenant"] = tenant
        if workflow_id is not None:
            changes["workflow_id"] = workflow_id
        out.append(dataclasses.replace(e, **changes))
    return out


def decisions(events: list[ExecutionEvent]) -> list[list[ExecutionEvent]]:
    out: list[list[ExecutionEvent]] = []
    for e in events:
        if out and out[-1][-1].causation_id == e.causation_id:
            out[-1].append(e)
        else:
            out.append([e])
    return out


class Loader:
    """Writes histories into the read models, facts, rollups and the audit store, as the
    projectors do (their own functions), and publishes live status like they do."""

    def __init__(self, settings: Settings, schema: str) -> None:
        self.settings = settings
        self.schema = schema
        self.rows = Rows()
        self.defs = Definitions()
        self.offset = 0
        self.rm = ReadModelProjector(settings, schema)
        self.an = AnalyticsProjector(settings, schema)
        self.live = LivePublisher(settings)
        self.codec = Codec.from_settings(settings)
        self.audit: Any = None

    async def start(self) -> Loader:
        await self.rm.connect()
        await self.an.connect()
        from flowlog.projections.audit.projector import Projector
        from flowlog.projections.audit.store import AuditStore
        from flowlog.schemas.guard import DecodeGuard

        store = await asyncio.to_thread(AuditStore, self.settings, self.schema)
        self.audit = Projector(self.settings, store,
                               DecodeGuard.from_settings(self.settings, validate=False))
        return self

    async def close(self) -> None:
        await self.rm.close()
        await self.an.close()
        await self.live.close()
        if self.audit is not None:
            self.audit.store.close()

    async def define(self, definition: dict[str, Any], at: Any) -> None:
        changes = DefinitionChanges()
        apply_definition(self.defs, "WorkflowDefined",
                         {"workflow_id": definition["id"], "version": 1,
                          "definition": definition, "occurred_at": at}, changes)
        await self._write(Work(definitions=changes))

    async def _write(self, work: Work) -> None:
        assert self.rm.conn is not None and self.an.pconn is not None
        async with self.rm.conn.transaction():
            await self.rm.write(self.rm.conn, work)
        async with self.an.pconn.transaction():
            await self.an.write_facts(self.an.pconn, work)
        await run_rollups(self.an.pconn)

    async def apply(self, batch: list[list[ExecutionEvent]], publish: bool = True
                    ) -> list[StatusChange]:
        """Fold decisions (one record each), write them in one transaction, store them in
        the audit store, publish the changed executions' status."""
        result = FoldResult()
        msgs = []
        for d in batch:
            topic = f"{self.settings.topic_prefix}execution-events"
            fold_record(self.rows, d, Coords(topic, 0, self.offset), result)
            value = self.codec.encode("ExecutionEventBatch",
                                      records.batch_record(d, d[0].causation_id))
            msgs.append(SimpleNamespace(topic=topic, partition=0, offset=self.offset,
                                        value=value, key=d[0].execution_id.encode(),
                                        headers=[], timestamp=0))
            self.offset += 1
        await self._write(Work(rows=self.rows, result=result))
        await asyncio.to_thread(self.audit.apply, msgs[0].topic, 0, msgs)
        changes = [StatusChange(x["execution_id"], x["workflow_id"], x["tenant"],
                                x["status"], x["last_seq"])
                   for x in (self.rows.executions[i] for i in result.executions)]
        if publish:
            await self.live.publish(changes)
        return changes


@dataclass
class World:
    """What the API tests see: the served API, keys, and the loaded executions."""

    url: str
    settings: Settings
    schema: str
    keys: dict[str, str]
    loader: Loader
    executions: dict[str, list[str]] = field(default_factory=dict)  # tenant -> ids
    running: dict[str, list[list[ExecutionEvent]]] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[who]}

    def client(self, who: str | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30,
                                 headers=self.headers(who) if who else {})


ACME_N = 12  # executions of tenant acme (the last two left running)
ZETA_N = 5


async def build_world(settings: Settings, schema: str) -> tuple[World, LiveServer]:
    await asyncio.to_thread(migrate, settings, schema)
    settings = settings.model_copy(update={"pg_schema": schema, "auth_rate_per_s": 100_000.0,
                                           "auth_rate_burst": 100_000.0,
                                           "api_live_poll_s": 1.0})
    loader = await Loader(settings, schema).start()
    base, _ = template(TEMPLATES[0])
    at = base[0].occurred_at - timedelta(days=1)
    for name in TEMPLATES:
        await loader.define(template(name)[1], at)
    private = dict(template(TEMPLATES[0])[1], id="zeta-private")
    await loader.define(private, at)
    world_executions: dict[str, list[str]] = {"acme": [], "zeta": []}
    running: dict[str, list[list[ExecutionEvent]]] = {}
    batch: list[list[ExecutionEvent]] = []
    for i in range(ACME_N):
        eid = f"acme-{i:03d}"
        ds = decisions(history(TEMPLATES[i % 4], eid, "acme", timedelta(minutes=i)))
        if i >= ACME_N - 2:  # left running: the rest is applied by the live tests
            cut = max(2, len(ds) // 2)
            running[eid] = ds[cut:]
            ds = ds[:cut]
        batch += ds
        world_executions["acme"].append(eid)
    for i in range(ZETA_N):
        eid = f"zeta-{i:03d}"
        wf = "zeta-private" if i == 0 else None
        batch += decisions(history(TEMPLATES[i % 4], eid, "zeta", timedelta(minutes=i, seconds=30),
                                   workflow_id=wf))
        world_executions["zeta"].append(eid)
    await loader.apply(batch, publish=False)
    async with auth_service(settings, schema) as svc:
        keys = {}
        for name, tenant, role in (("acme", "acme", "viewer"), ("zeta", "zeta", "viewer"),
                                   ("root", "*", "admin")):
            keys[name] = (await svc.create_key(tenant=tenant, role=role, name=name)).key
        keys["acme-nowf"] = (await svc.create_key(tenant="acme", role="viewer",
                                                  name="acme-nowf",
                                                  scopes=["executions:read"])).key
    conn = loader.rm.conn
    assert conn is not None
    await conn.execute(
        "INSERT INTO webhook_registrations (path, workflow_id, workflow_version, "
        "trigger_index, tenant, config) VALUES ('hooks/support', 'support-triage', 1, 0, "
        "'acme', '{\"secret\": \"${secret:HOOK}\"}'), ('hooks/zeta', 'zeta-private', 1, 0, "
        "'zeta', '{}')")
    await conn.execute(
        "INSERT INTO schedules (workflow_id, trigger_index, workflow_version, tenant, config, "
        "since) VALUES ('batch-loop', 1, 1, 'acme', '{\"cron\": \"0 7 * * *\"}', "
        "'2025-01-01T00:00:00Z'), ('zeta-private', 1, 1, 'zeta', '{\"cron\": \"0 8 * * *\"}', "
        "'2025-01-01T00:00:00Z')")
    for wf, tenant_n in (("batch-loop", 5), ("zeta-private", 3)):
        for d in range(tenant_n):
            await conn.execute(
                "INSERT INTO schedule_slots (workflow_id, trigger_index, slot_at, slot_id, "
                "state, execution_id, workflow_version) VALUES ($1, 1, "
                "'2025-01-01T07:00:00Z'::timestamptz + make_interval(days => $2), $3, "
                "'fired', $4, 1)", wf, d, f"{wf}-slot-{d}", f"{wf}-x-{d}")
    server = LiveServer(make_app(settings, schema)).start()
    world = World(server.url, settings, schema, keys, loader, world_executions, running)
    return world, server


@pytest.fixture(scope="module")
def module_schema(pg_dsn: str, redis_url: str, kafka_bootstrap: str) -> Iterator[str]:
    import uuid

    import psycopg

    schema = f"t_api_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield schema
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="module")
async def world(module_schema: str) -> AsyncIterator[World]:
    """One loaded schema and one served API for a test module (read-only tests share it)."""
    import uuid

    settings = Settings(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    w, server = await build_world(settings, module_schema)
    try:
        yield w
    finally:
        server.stop()
        await w.loader.close()
