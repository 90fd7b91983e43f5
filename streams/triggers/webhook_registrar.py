"""Keeps ``webhook_registrations`` equal to the webhook triggers of active workflows.

A registration is derived state: f(definition events). On start every workflow is synced;
then each workflow whose definition events arrive is re-synced (its rows replaced in one
transaction, under an advisory lock per workflow so several gateways agree). A paused or
archived workflow loses its rows. A path another workflow already holds is refused and
logged: paths are unique, first come first served.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from flowlog.streams.runtime.registry import RegistryFollower
from flowlog.streams.triggers.definitions import TrackingRegistry
from psycopg import AsyncConnection

from flowlog.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WebhookRegistration:
    path: str
    workflow_id: str
    workflow_version: int
    trigger_index: int
    tenant: str
    method: str
    config: dict[str, Any]


def webhook_path(workflow_id: str, index: int, config: dict[str, Any]) -> str:
    """The trigger's path under ``/hooks/``: its own, else ``<workflow_id>/<index>``."""
    given = config.get("path")
    return str(given).strip("/") if given else f"{workflow_id}/{index}"


def registrations(registry: TrackingRegistry, workflow_id: str) -> list[WebhookRegistration]:
    version, triggers = registry.active_triggers(workflow_id, "webhook")
    tenant = registry.tenants.get(workflow_id, "default")
    return [WebhookRegistration(webhook_path(workflow_id, i, cfg), workflow_id, version, i,
                                tenant, str(cfg.get("method") or "POST").upper(), cfg)
            for i, cfg in triggers]


async def sync_workflow(conn: AsyncConnection[Any], workflow_id: str,
                        rows: list[WebhookRegistration]) -> list[str]:
    """Replace the workflow's registrations; returns the paths refused (taken)."""
    refused = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('webhooks:' || %s))",
                           (workflow_id,))
        await conn.execute("DELETE FROM webhook_registrations WHERE workflow_id = %s",
                           (workflow_id,))
        for r in rows:
            cur = await conn.execute(
                "INSERT INTO webhook_registrations (path, workflow_id, workflow_version, "
                "trigger_index, tenant, method, config) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (path) DO NOTHING RETURNING path",
                (r.path, r.workflow_id, r.workflow_version, r.trigger_index, r.tenant,
                 r.method, orjson.dumps(r.config).decode()))
            if await cur.fetchone() is None:
                refused.append(r.path)
    for path in refused:
        log.error("webhook path %r of %s is taken by another workflow: not registered; "
                  "give the trigger another path", path, workflow_id)
    return refused


class WebhookRegistrar:
    """Follows definitions and syncs registrations until stopped."""

    def __init__(self, settings: Settings, schema: str | None = None) -> None:
        self.settings = settings
        self.schema = schema or settings.pg_schema
        self.registry = TrackingRegistry()
        self.follower = RegistryFollower(settings, self.registry)
        self.synced = asyncio.Event()  # set after each sync pass (tests wait on it)
        self.passes = 0

    async def _connect(self) -> AsyncConnection[Any]:
        return await AsyncConnection.connect(
            self.settings.pg_dsn, autocommit=True, options=f"-c search_path={self.schema}")

    async def sync_all(self, conn: AsyncConnection[Any]) -> None:
        known = set(self.registry.workflows)
        cur = await conn.execute("SELECT DISTINCT workflow_id FROM webhook_registrations")
        stale = {row[0] for row in await cur.fetchall()} - known
        for wid in sorted(known | stale):
            await sync_workflow(conn, wid, registrations(self.registry, wid))
        self.registry.take_dirty()

    async def run(self, stop: asyncio.Event) -> None:
        await self.follower.start()
        conn = await self._connect()
        try:
            await self.sync_all(conn)
            self._passed()
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), 0.2)
                except TimeoutError:
                    pass
                dirty = self.registry.take_dirty()
                try:
                    if conn.closed:
                        conn = await self._connect()
                    for wid in sorted(dirty):
                        await sync_workflow(conn, wid, registrations(self.registry, wid))
                except Exception:
                    log.exception("webhook registrations: sync failed; retrying")
                    self.registry.dirty |= dirty
                    await conn.close()
                    continue
                self._passed()
        finally:
            await conn.close()
            await self.follower.stop()

    def _passed(self) -> None:
        self.passes += 1
        self.synced.set()
