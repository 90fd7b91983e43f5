"""The webhook gateway's request path: check, transform, publish. Nothing else.

``POST /hooks/<path>`` in this order, each step answering as soon as it refuses:
registration (404/405) → IP allowlist (403) → body size (413) → required headers (403)
→ signature, or an API key where the trigger has no secret (401/403) → rate limits per IP
and per key, and replay refusal, in one Redis round trip (429 + Retry-After / 409) →
Idempotency-Key seen before (202, same execution, nothing published) → JSON (400) → CEL
input and dedup (422) → publish ``TriggerReceived`` (503 if Kafka refuses) → 202 with the
execution id, or, with ``?wait=<seconds>``, 200 with the result when it ends in time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from flowlog.aggregates.errors import ExpressionError
from flowlog.api.auth.model import AuthError
from flowlog.api.auth.ratelimit import Limit, RedisLimiter
from flowlog.api.auth.service import AuthService
from flowlog.api.webhooks import signing
from flowlog.api.webhooks.registrations import Registration, RegistrationCache, SecretLookup
from flowlog.api.webhooks.results import ResultWaiter
from flowlog.schemas.errors import EventValidationError, PublishError
from flowlog.schemas.events import TriggerReceived
from flowlog.schemas.ids import execution_id_for
from flowlog.schemas.sdk import EventProducer

from flowlog.observability.metrics import EVENTS_OUT
from flowlog.settings import Settings

IDEMPOTENCY_TTL_S = 24 * 3600


class Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None
                 ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True, slots=True)
class Answer:
    """A response, before any framework sees it (the fast path sends it as raw ASGI)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None

    def response(self) -> Response:
        return Response(orjson.dumps(self.body), status_code=self.status, headers=self.headers,
                        media_type="application/json")

    async def send(self, send: Any) -> None:
        payload = orjson.dumps(self.body)
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(payload)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in (self.headers or {}).items()]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def json_response(status: int, body: dict[str, Any],
                  headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, body, headers)


@dataclass
class Gateway:
    """Everything a request needs; built by ``service.build_gateway`` (or a test)."""

    settings: Settings
    registrations: RegistrationCache
    redis: Any
    producer: EventProducer
    secrets: SecretLookup
    auth: AuthService | None = None
    waiter: ResultWaiter | None = None
    clock: Callable[[], float] = time.time
    namespace: str = ""

    def __post_init__(self) -> None:
        self.ns = (self.namespace or self.settings.topic_prefix) + "wh:"
        self.limiter = RedisLimiter(self.redis, prefix=self.ns)
        self._secrets: dict[str, tuple[float, str]] = {}
        self.published = 0

    async def secret(self, name: str) -> str:
        now = time.monotonic()
        hit = self._secrets.get(name)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = await self.secrets(name)
        self._secrets[name] = (now + 60.0, value)
        return value

    async def handle(self, request: Request, path: str) -> Answer:
        try:
            return await self._handle(request, path)
        except Refused as exc:
            return json_response(exc.status, {"error": exc.message}, exc.headers)

    async def _handle(self, request: Request, path: str) -> Answer:
        reg = self.registrations.get(path)
        if reg is None:
            raise Refused(404, f"no webhook at /hooks/{path}: is its workflow active?")
        if request.method != reg.method:
            raise Refused(405, f"/hooks/{path} accepts {reg.method}, not {request.method}",
                          {"Allow": reg.method})
        client = request.client.host if request.client else None
        if not reg.ip_allowed(client):
            raise Refused(403, f"client address {client} is not in this webhook's allow_ips")
        body = await read_body(request, reg.max_body)
        headers = {k.lower(): v for k, v in request.headers.items()}
        for name, want in reg.headers.items():
            if headers.get(name) != want:
                raise Refused(403, f"header {name} must be {want!r} "
                                   f"(got {headers.get(name)!r})")
        once_key = await self.authenticate(reg, headers, body)
        admission = await self.limiter.admit(
            [Limit(f"ip:{client}", reg.per_ip, reg.per_ip),
             Limit(f"key:{reg.path}", reg.per_key, reg.per_key)],
            once_key=once_key, once_ttl_s=2 * reg.tolerance_s)
        if admission.replayed:
            raise Refused(409, "this signed request was already received (replay): sign "
                               "each request anew; send Idempotency-Key to retry safely")
        if not admission.admitted:
            which = "client IP" if admission.limit and admission.limit.key.startswith(
                "ip:") else "webhook"
            raise Refused(429, f"rate limit of this {which} exceeded: retry later",
                          {"Retry-After": admission.retry_after_header})
        idem = headers.get("idempotency-key")
        if idem is not None and not 0 < len(idem) <= 200:
            raise Refused(400, "Idempotency-Key must be 1 to 200 characters")
        if idem is not None:
            seen = await self.redis.get(f"{self.ns}idem:{reg.workflow_id}:{idem}")
            if seen is not None:
                return json_response(202, {"execution_id": seen.decode(),
                                           "workflow_id": reg.workflow_id, "duplicate": True})
        payload = parse_body(body, headers.get("content-type", ""))
        variables = {"headers": headers, "body": payload,
                     "query": dict(request.query_params)}
        trigger_input = transform(reg, variables)
        dedup = f"webhook:{idem}" if idem is not None else dedup_key(reg, variables)
        wait_s = wanted_wait(request, self.settings.webhook_wait_max_s)
        execution_id = execution_id_for(reg.workflow_id, dedup)
        event = TriggerReceived(workflow_id=reg.workflow_id, execution_id=execution_id,
                                workflow_version=reg.workflow_version, source="webhook",
                                input=trigger_input, dedup_key=dedup, tenant=reg.tenant)
        fut = self.waiter.expect(execution_id) if wait_s and self.waiter else None
        trace = {k: headers[k] for k in ("traceparent", "tracestate") if k in headers}
        try:
            await self.producer.publish_async(event, headers=trace or None)
        except (PublishError, EventValidationError) as exc:
            if fut is not None and self.waiter is not None:
                self.waiter.forget(execution_id, fut)
            if once_key is not None:  # nothing was accepted: the same request may retry
                await self.redis.delete(f"{self.ns}once:{once_key}")
            raise Refused(503, f"could not publish the trigger ({exc}): retry",
                          {"Retry-After": "1"}) from None
        self.published += 1
        EVENTS_OUT.labels("webhooks", "triggers").inc()
        if idem is not None:
            await self.redis.set(f"{self.ns}idem:{reg.workflow_id}:{idem}", execution_id,
                                 ex=IDEMPOTENCY_TTL_S)
        accepted = {"execution_id": execution_id, "workflow_id": reg.workflow_id}
        if fut is None or self.waiter is None:
            return json_response(202, accepted)
        try:
            end = await asyncio.wait_for(fut, wait_s)
        except TimeoutError:
            self.waiter.forget(execution_id, fut)
            return json_response(202, {**accepted, "status": "running",
                                       "waited_s": wait_s})
        return json_response(200, {**accepted, **result_of(end)})

    async def authenticate(self, reg: Registration, headers: dict[str, str], body: bytes
                           ) -> str | None:
        """Signature (returns its replay key) or, without a secret, an API key."""
        if reg.secret_ref is not None:
            try:
                secret = await self.secret(reg.secret_ref)
            except Exception as exc:
                raise Refused(503, f"the webhook's secret cannot be read ({type(exc).__name__})"
                                   ": the operator must provide it", {"Retry-After": "5"}
                              ) from None
            try:
                sig = signing.verify(headers.get(signing.SIGNATURE_HEADER), secret, body,
                                     now=self.clock(), tolerance_s=reg.tolerance_s)
            except signing.SignatureError as exc:
                raise Refused(401, str(exc)) from None
            return f"sig:{reg.path}:{sig.timestamp}:{min(sig.digests)}"
        if self.auth is None:
            raise Refused(401, "this webhook has no secret and this gateway checks no API "
                               "keys: give the trigger a secret")
        try:
            principal = await self.auth.authenticate(headers.get("authorization"),
                                                     headers.get("x-api-key"))
            principal.require("operator", "executions:write", reg.tenant)
        except AuthError as exc:
            extra = {"Retry-After": str(max(1, int(exc.retry_after or 1)))} \
                if exc.status == 429 else {}
            raise Refused(exc.status, exc.message, extra) from None
        return None


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"body of {declared} bytes is over this webhook's limit of "
                           f"{limit} bytes")
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise Refused(413, f"body is over this webhook's limit of {limit} bytes")
    return bytes(chunks)


def parse_body(body: bytes, content_type: str) -> Any:
    if not body.strip():
        return {}
    if content_type.startswith("text/"):
        return body.decode("utf-8", "replace")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refused(400, f"body is not valid JSON: {exc}; send JSON (or a text/* "
                           "content type)") from None


def transform(reg: Registration, variables: dict[str, Any]) -> Any:
    if reg.input is None:
        body = variables["body"]
        return body if isinstance(body, dict) else {"body": body}
    try:
        value = reg.input.evaluate(variables)
    except ExpressionError as exc:
        raise Refused(422, f"trigger input expression failed on this request: {exc}") from None
    if not isinstance(value, dict):
        raise Refused(422, f"trigger input expression gave {type(value).__name__}, not a map: "
                           "the workflow's input must be an object")
    return value


def dedup_key(reg: Registration, variables: dict[str, Any]) -> str | None:
    if reg.dedup is None:
        return None
    try:
        value = reg.dedup.evaluate(variables)
    except ExpressionError as exc:
        raise Refused(422, f"trigger dedup expression failed on this request: {exc}") from None
    return None if value is None else f"webhook:{value}"


def wanted_wait(request: Request, limit: float) -> float:
    raw = request.query_params.get("wait")
    if raw is None:
        prefer = request.headers.get("prefer", "")
        raw = prefer.partition("wait=")[2].split(",")[0].strip() if "wait=" in prefer else None
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise Refused(400, f"wait={raw!r} is not a number of seconds") from None
    return max(0.0, min(value, limit))


def result_of(event: dict[str, Any]) -> dict[str, Any]:
    name = event["event_type"]
    out: dict[str, Any] = {"status": {"ExecutionSucceeded": "succeeded",
                                      "ExecutionFailed": "failed",
                                      "ExecutionCancelled": "cancelled",
                                      "ExecutionRejected": "rejected"}[name]}
    for key in ("output", "error", "reason"):
        if event.get(key) is not None:
            value = event[key]
            out[key] = orjson.loads(value) if key == "output" and isinstance(value, str) \
                else value
    return out


@dataclass(frozen=True, slots=True)
class _HookRoute:
    path: str = "/hooks/{path:path}"  # the route template metrics label requests with


class HookFastPath:
    """``/hooks/*`` straight to the gateway, past FastAPI's routing and dependency
    machinery (a third of a request's CPU, measured); everything else (OpenAPI, health,
    lifespan) goes to the FastAPI app, which also documents the hook route."""

    route = _HookRoute()

    def __init__(self, app: FastAPI, holder: dict[str, Gateway]) -> None:
        self.app = app
        self.holder = holder

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/hooks/") \
                and "gateway" in self.holder:
            scope["route"] = self.route
            answer = await self.holder["gateway"].handle(Request(scope, receive),
                                                         scope["path"][len("/hooks/"):])
            await answer.send(send)
            return
        await self.app(scope, receive, send)


def create_app(gateway_factory: Callable[[], Any]) -> HookFastPath:
    """The ASGI app; ``gateway_factory()`` is an async context manager yielding a
    ``Gateway`` (its clients are made on the serving loop)."""
    from contextlib import asynccontextmanager

    holder: dict[str, Gateway] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        async with gateway_factory() as gateway:
            holder["gateway"] = gateway
            app.state.gateway = gateway
            yield

    app = FastAPI(title="flowlog webhook gateway", lifespan=lifespan,
                  description="Signed webhooks in, TriggerReceived events out.")

    async def hook(request: Request, path: str) -> Response:
        return (await holder["gateway"].handle(request, path)).response()

    for method in ("POST", "PUT", "PATCH"):
        app.add_api_route("/hooks/{path:path}", hook, methods=[method], status_code=202,
                          summary="Deliver a webhook", operation_id=f"hook_{method.lower()}")

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: registrations loaded")
    async def readyz() -> Response:
        gw = holder.get("gateway")
        ready = gw is not None and gw.registrations.loaded.is_set()
        return json_response(200 if ready else 503,
                             {"ready": ready,
                              "webhooks": len(gw.registrations.by_path) if gw else 0}
                             ).response()

    return HookFastPath(app, holder)
