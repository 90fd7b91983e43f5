"""HTTP latency by route for the FastAPI/Starlette apps (query API, webhooks, gateway).

    from flowlog.observability.http import instrument_app
    instrument_app(app)    # flowlog_http_request_seconds{route, method, status}

The route label is the route's path template (``/executions/{execution_id}``), never the
raw path, so label values stay bounded; unmatched paths count as ``<unmatched>``.
"""

from __future__ import annotations

import time
from typing import Any

from flowlog.observability.metrics import HTTP_LATENCY


class HttpMetricsMiddleware:
    """Pure ASGI middleware (no response buffering) observing each request's duration."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            HTTP_LATENCY.labels(template, scope.get("method", "?"),
                                str(status["code"])).observe(time.perf_counter() - started)


def instrument_app(app: Any) -> Any:
    """Add the middleware to a Starlette/FastAPI app; returns the app."""
    app.add_middleware(HttpMetricsMiddleware)
    return app
