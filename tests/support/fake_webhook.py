"""A real HTTP server to be the target of webhook nodes and the http_request tool.

Records every request; answers 200 `{"ok": true, "received": <JSON body or text>}` unless
told otherwise: `fail(n, status)` answers the next n requests with `status` (e.g. 500 or
429), `hang(seconds)` delays the next answer, `respond(status, json)` queues one answer.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.support.server import BackgroundServer


@dataclass
class Planned:
    status: int = 200
    json: Any = None
    hang_s: float = 0.0
    headers: dict[str, str] | None = None


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: str = ""  # raw (percent-encoded) query string

    @property
    def text(self) -> str:
        return self.body.decode()


class FakeWebhookServer:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._plan: deque[Planned] = deque()
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._down_for = 0.0
        self._down_status = 503
        self._server = BackgroundServer(self._app())

    def fail(self, times: int, status: int = 500) -> FakeWebhookServer:
        with self._lock:
            self._plan.extend(Planned(status=status) for _ in range(times))
        return self

    def down_for(self, seconds: float, status: int = 503) -> FakeWebhookServer:
        """An outage: answer every request with ``status`` for ``seconds`` from the next
        request on."""
        with self._lock:
            self._down_for = seconds
            self._down_status = status
        return self

    def hang(self, seconds: float) -> FakeWebhookServer:
        with self._lock:
            self._plan.append(Planned(hang_s=seconds))
        return self

    def respond(self, status: int, json: Any = None, **headers: str) -> FakeWebhookServer:
        with self._lock:
            self._plan.append(Planned(status=status, json=json, headers=headers or None))
        return self

    def reset(self) -> None:
        with self._lock:
            self._plan.clear()
            self.requests.clear()
            self._down_until = self._down_for = 0.0

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> FakeWebhookServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FakeWebhookServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        async def anything(request: Request, path: str) -> Response:
            body = await request.body()
            with self._lock:
                self.requests.append(Received(
                    request.method, request.url.path,
                    {k.lower(): v for k, v in request.headers.items()}, body,
                    request.url.query,
                ))  # fmt: skip
                if self._down_for:  # the outage starts with this request
                    self._down_until = time.monotonic() + self._down_for
                    self._down_for = 0.0
                if time.monotonic() < self._down_until:
                    plan = Planned(status=self._down_status)
                else:
                    plan = self._plan.popleft() if self._plan else Planned()
            if plan.hang_s:
                await asyncio.sleep(plan.hang_s)
            if plan.json is not None:
                payload = plan.json
            elif plan.status >= 400:
                payload = {"error": f"scripted {plan.status}"}
            else:
                try:
                    received: Any = (await request.json()) if body else None
                except ValueError:
                    received = body.decode(errors="replace")
                payload = {"ok": True, "received": received}
            return JSONResponse(payload, status_code=plan.status, headers=plan.headers)

        return app
