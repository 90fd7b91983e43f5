"""The ``gateway`` process (``flowlog worker gateway``): wiring and serving on
``gateway_host:gateway_port``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from flowlog.api.auth.bootstrap import auth_service
from flowlog.api.gateway.app import Services, create_app
from flowlog.schemas.sdk import EventProducer

from flowlog.settings import Settings

log = logging.getLogger(__name__)


class FollowedDefinitions:
    """``Definitions`` over the engine's registry, followed from workflow-definitions."""

    def __init__(self, registry: Any, follower: Any) -> None:
        self.registry = registry
        self.follower = follower

    async def catch_up(self) -> None:
        await self.follower.catch_up(within=5.0)

    def latest(self, workflow_id: str) -> int:
        wf = self.registry.workflows.get(workflow_id)
        return int(wf.latest) if wf is not None else 0

    def tenant(self, workflow_id: str) -> str | None:
        if workflow_id not in self.registry.workflows:
            return None
        return str(self.registry.tenants.get(workflow_id, "default"))

    def latest_body(self, workflow_id: str) -> dict[str, Any] | None:
        wf = self.registry.workflows.get(workflow_id)
        if wf is None or not wf.versions:
            return None
        return {k: v for k, v in wf.versions[wf.latest].items() if k != "version"}


@contextlib.asynccontextmanager
async def build_services(settings: Settings, schema: str | None = None
                         ) -> AsyncIterator[Services]:
    from flowlog.streams.runtime.registry import RegistryFollower
    from flowlog.streams.triggers.definitions import TrackingRegistry

    registry = TrackingRegistry()
    follower = RegistryFollower(settings, registry)
    await follower.start()
    producer = EventProducer.from_settings(settings, **{"linger.ms": 5})
    try:
        async with auth_service(settings, schema) as auth:
            yield Services(auth, producer, FollowedDefinitions(registry, follower))
    finally:
        await asyncio.to_thread(producer.close, 10.0)
        await follower.stop()


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Serve the command gateway until ``stop`` is set."""
    from flowlog.observability.http import instrument_app

    app = instrument_app(create_app(lambda: build_services(settings)))
    server = uvicorn.Server(uvicorn.Config(
        app, host=settings.gateway_host, port=settings.gateway_port, log_level="warning",
        lifespan="on", access_log=False, timeout_graceful_shutdown=5))
    task = asyncio.create_task(server.serve(), name="gateway-server")
    log.info("command gateway on http://%s:%s (OpenAPI at /docs)", settings.gateway_host,
             settings.gateway_port)
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
            raise RuntimeError("the command gateway's server ended on its own")
    finally:
        server.should_exit = True
        stopper.cancel()
        await asyncio.wait({task}, timeout=15)
