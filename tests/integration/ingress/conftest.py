"""Ingress test helpers: apps served by uvicorn on loopback (lifespan on, own thread)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from alembic import command
from flowlog.projections.migrate import _config

from flowlog.settings import Settings


class LiveServer:
    """An ASGI app on 127.0.0.1:<free port> in a thread with its own event loop; the app's
    lifespan runs there, so its pools and clients belong to that loop."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on",
                                               timeout_graceful_shutdown=2))
        self._server = server
        self._thread = threading.Thread(target=lambda: asyncio.run(server.serve([sock])),
                                        name=f"ingress-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 90  # a loaded machine starts slowly
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("server did not start (see the log above)")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def migrate(settings: Settings, schema: str) -> None:
    """Upgrade ``schema`` to the ingress branch's head only: these tests need only its
    tables, and do not break while another area's revisions are being written."""
    command.upgrade(_config(settings, schema), "ingress@head")


@pytest.fixture
def ingress_settings(settings: Settings, pg_schema: str, redis_url: str) -> Settings:
    """The test's settings, its schema migrated, pointing at it."""
    migrate(settings, pg_schema)
    return settings.model_copy(update={"pg_schema": pg_schema})


@pytest.fixture
def live() -> Iterator[list[LiveServer]]:
    servers: list[LiveServer] = []
    yield servers
    for s in servers:
        s.stop()
