"""The ``api`` process (``flowlog worker api``): the query API and the dashboard on
``api_host:api_port``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
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


CHILD_ENV = "FLOWLOG_API_CHILD"


def bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:  # several processes accept on one port; the kernel spreads connections
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"the query API cannot listen on {host}:{port}: {exc}; set "
                      "FLOWLOG_API_PORT to a free port") from exc
    return sock


def _spawn(n: int) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, CHILD_ENV: "1", "FLOWLOG_API_PARENT": str(os.getpid())}
    return [subprocess.Popen([sys.executable, "-m", "flowlog.cli", "worker", "api"], env=env)
            for _ in range(n)]


async def _orphaned(stop: asyncio.Event, parent: int) -> None:
    """A worker process of a multi-process API ends when its parent is gone."""
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("the query API's parent process %s is gone: stopping", parent)
            stop.set()
        await asyncio.sleep(1)


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Serve the query API until ``stop`` is set. ``FLOWLOG_API_WORKERS`` > 1: this process
    starts that many minus one more (same command) on the same port (SO_REUSEPORT) and stops
    them when it stops."""
    child = os.environ.get(CHILD_ENV) == "1"
    workers = max(1, settings.api_workers)
    sock = bind(settings.api_host, settings.api_port, reuse_port=workers > 1)
    children: list[subprocess.Popen[bytes]] = []
    if workers > 1 and not child:
        children = _spawn(workers - 1)
    watcher = (asyncio.create_task(_orphaned(stop, int(os.environ.get("FLOWLOG_API_PARENT",
                                                                          os.getppid()))))
               if child else None)
    server = uvicorn.Server(uvicorn.Config(
        make_app(settings), log_level="warning", lifespan="on", access_log=False,
        http="httptools", proxy_headers=False,  # no X-Forwarded-* rewriting layer per request
        timeout_graceful_shutdown=5))
    task = asyncio.create_task(server.serve([sock]), name="api-server")
    if not child:
        log.info("query API on http://%s:%s (OpenAPI at /docs, dashboard at /dashboard/; "
                 "%d process(es))", settings.api_host, settings.api_port, workers)
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
            raise RuntimeError("the query API's server ended on its own")
    finally:
        server.should_exit = True
        stopper.cancel()
        if watcher is not None:
            watcher.cancel()
        for c in children:
            c.terminate()
        await asyncio.wait({task}, timeout=15)
        for c in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(c.wait, 15)
            if c.poll() is None:
                c.kill()
        sock.close()
