"""A real HTTP server answering HashiCorp Vault KV v2 reads (`GET /v1/<mount>/data/<path>`,
header `X-Vault-Token`), enough for the executors' secret resolver."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.support.server import BackgroundServer


class FakeVaultServer:
    def __init__(self, *, token: str = "test-root-token", mount: str = "secret") -> None:
        self.token = token
        self.mount = mount
        self.data: dict[str, dict[str, Any]] = {}  # path -> key/value pairs
        self.reads: list[str] = []
        self._server = BackgroundServer(self._app())

    def put(self, path: str, **values: Any) -> None:
        self.data[path.strip("/")] = dict(values)

    @property
    def url(self) -> str:
        return self._server.url

    def __enter__(self) -> FakeVaultServer:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/{mount}/data/{path:path}")
        async def read(mount: str, path: str, request: Request) -> JSONResponse:
            self.reads.append(path)
            if request.headers.get("x-vault-token") != self.token:
                return JSONResponse({"errors": ["permission denied"]}, status_code=403)
            if mount != self.mount or path not in self.data:
                return JSONResponse({"errors": []}, status_code=404)
            return JSONResponse({
                "request_id": "test", "lease_id": "", "renewable": False, "lease_duration": 0,
                "data": {"data": self.data[path],
                         "metadata": {"created_time": "2026-01-01T00:00:00Z", "version": 1,
                                      "deletion_time": "", "destroyed": False}},
            })  # fmt: skip

        return app
