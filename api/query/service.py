"""The ``api`` process (``flowlog worker api``): the query API and the dashboard on
``api_host:api_port``."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from flowlog.api.query.app import create_app
from flowlog.api.query.services import build_services

from flowlog.settings import Settings

log = logging.getLogger(__name__)

#: The dashboard's built assets (`make dashboard` writes them; see api/dashboard/).
STATIC = Path(__file__).resolve().parent / "static"


def make_app(settings: Settings, schema: str | None = None) -> FastAPI:
    from flowlog.observability.http import instrument_app

    if not (STATIC / "index.html").exists():
        log.warning("the dashboard is not built (%s missing): run `make dashboard`", STATIC)
    app: FastAPI = instrument_app(create_app(lambda: build_services(settings, schema), STATIC))
    return app


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Serve the query API until ``stop`` is set."""
    server = uvicorn.Server(uvicorn.Config(
        make_app(settings), host=settings.api_host, port=settings.api_port,
        log_level="warning", lifespan="on", access_log=False, timeout_graceful_shutdown=5))
    task = asyncio.create_task(server.serve(), name="api-server")
    log.info("query API on http://%s:%s (OpenAPI at /docs, dashboard at /dashboard/)",
             settings.api_host, settings.api_port)
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
            raise RuntimeError("the query API's server ended on its own")
    finally:
        server.should_exit = True
        stopper.cancel()
        await asyncio.wait({task}, timeout=15)
