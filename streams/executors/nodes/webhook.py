"""`webhook` nodes: one HTTP request from the rendered config (url, method, headers, body).

A `body` that is a string is sent as is (with `Content-Type: application/json` when it
parses as JSON and no content type is given); a mapping or list is sent as JSON. The
output is `{"status", "headers", "body", "json"}`; a non-2xx answer fails the task
(retryable for 5xx, 408 and 429).
"""

from __future__ import annotations

import json
from typing import Any

from flowlog.streams.executors.errors import InvalidConfig
from flowlog.streams.executors.http import response_body
from flowlog.streams.executors.nodes.base import NodeContext

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")


async def run_webhook_node(ctx: NodeContext) -> Any:
    config = ctx.config
    url = config.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidConfig("a webhook node needs `url`; fix the workflow definition")
    method = str(config.get("method") or "POST").upper()
    if method not in METHODS:
        raise InvalidConfig(
            f"webhook method {method!r} is not one of {', '.join(METHODS)}; fix `method`"
        )
    headers = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}
    body = config.get("body")
    json_body: Any = None
    content: str | None = None
    if isinstance(body, dict | list):
        json_body = body
    elif body is not None and body != "":
        content = str(body)
        if not any(k.lower() == "content-type" for k in headers) and _is_json(content):
            headers["Content-Type"] = "application/json"
    response = await ctx.http.request(
        method, url,
        idempotency_key=ctx.task.task_key, timeout_s=ctx.remaining_s(),
        headers=headers, json=json_body, content=content,
    )  # fmt: skip
    return {"status": response.status_code, "headers": dict(response.headers),
            **response_body(response)}  # fmt: skip


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
