"""Outside HTTP calls: the task key as Idempotency-Key, a breaker and a concurrency limit
per host, timeouts, and errors mapped to retryable or not."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from flowlog.streams.executors.errors import (
    ConnectionFailed,
    ExecutorError,
    HttpStatusError,
    InvalidConfig,
    TaskTimeout,
    is_retryable_status,
)
from flowlog.streams.executors.limits import Limits

IDEMPOTENCY_HEADER = "Idempotency-Key"


def target_of(url: str) -> str:
    """The breaker and concurrency key of a URL: its scheme, host and port."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise InvalidConfig(f"url {url!r} is not absolute; give a URL like https://host/path")
    return f"{parts.scheme}://{parts.netloc}"


class HttpGateway:
    """Makes outside HTTP calls for node runners and tools."""

    def __init__(self, client: httpx.AsyncClient, limits: Limits) -> None:
        self.client = client
        self.limits = limits

    async def request(
        self,
        method: str,
        url: str,
        *,
        idempotency_key: str,
        timeout_s: float,
        headers: dict[str, str] | None = None,
        json: Any = None,
        content: str | bytes | None = None,
        target: str | None = None,
        raise_for_status: bool = True,
    ) -> httpx.Response:
        """Send one request; raise an `ExecutorError` on failure (see errors.py).

        `target` names the breaker (default: the URL's host). With `raise_for_status`, a
        non-2xx answer raises `HttpStatusError` (retryable for 5xx, 408 and 429).
        """
        target = target or target_of(url)
        if timeout_s <= 0:
            raise TaskTimeout(f"no time left before the task's deadline to call {target}")
        send_headers = {IDEMPOTENCY_HEADER: idempotency_key}
        for name, value in (headers or {}).items():
            if name.lower() == IDEMPOTENCY_HEADER.lower():
                send_headers.pop(IDEMPOTENCY_HEADER, None)
            send_headers[name] = value
        breakers = self.limits.breakers
        await breakers.before_call(target)
        started = time.monotonic()
        try:
            async with self.limits.target(target):
                # A little under the task's own timeout, so that a hanging target times out
                # here (and counts against its breaker) before the task is cancelled.
                left = timeout_s - (time.monotonic() - started)
                response = await self.client.request(
                    method.upper(),
                    url,
                    headers=send_headers,
                    json=json,
                    content=content,
                    timeout=httpx.Timeout(max(0.001, left - min(0.05, left * 0.1))),
                )
        except httpx.TimeoutException as exc:
            await breakers.record_failure(target)
            raise TaskTimeout(
                f"{method.upper()} {target} timed out after {time.monotonic() - started:.1f}s"
                f" ({type(exc).__name__})"
            ) from exc
        except (httpx.TransportError, OSError) as exc:
            await breakers.record_failure(target)
            raise ConnectionFailed(
                f"{method.upper()} {target} failed: {type(exc).__name__}: {exc}"
            ) from exc
        except BaseException:
            # cancelled: the task's deadline came while the target was still answering
            if time.monotonic() - started >= timeout_s * 0.9:
                await breakers.record_failure(target)
            else:
                await breakers.record_neutral(target)
            raise
        if is_retryable_status(response.status_code):
            await breakers.record_failure(target)
        elif response.is_success:
            await breakers.record_success(target)
        else:
            await breakers.record_neutral(target)
        if raise_for_status and not response.is_success:
            raise status_error(method, target, response)
        return response


def status_error(method: str, target: str, response: httpx.Response) -> ExecutorError:
    """The error of a non-2xx answer, with the start of its body."""
    body = response.text[:300].strip()
    return HttpStatusError(
        response.status_code,
        f"{method.upper()} {target}{response.request.url.raw_path.decode(errors='replace')} "
        f"answered {response.status_code} {response.reason_phrase}" + (f": {body}" if body else ""),
    )


def response_body(response: httpx.Response) -> dict[str, Any]:
    """`{"body": text, "json": value or None}` of a response."""
    text = response.text
    parsed: Any = None
    if text and "json" in response.headers.get("content-type", ""):
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
    return {"body": text, "json": parsed}
