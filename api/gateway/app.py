"""The command gateway's endpoints (FastAPI; OpenAPI at /openapi.json, /docs).

Every endpoint authenticates first (401), then checks role, scope and the workflow's tenant
(403); only then is anything published. Who and why travel with every record as the Kafka
headers ``flowlog-actor`` (``user:alice``, ``key:ci``) and ``flowlog-reason``, and in the
event's own ``reason`` field where it has one: the operator audit trail.

Roles: admin defines, updates and deletes workflows (scope ``workflows:write``); operator
activates and pauses them (``workflows:write``) and executes, cancels and retries
(``executions:write``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from flowlog.aggregates.definition.parse import parse_text
from flowlog.aggregates.definition.validate import validate_definition
from flowlog.aggregates.errors import DefinitionParseError
from flowlog.api.auth import deps
from flowlog.api.auth.model import Principal
from flowlog.api.auth.service import AuthService
from flowlog.schemas.errors import EventValidationError, PublishError
from flowlog.schemas.events import (
    CancelRequested,
    RetryNodeRequested,
    TriggerReceived,
    WorkflowActivated,
    WorkflowArchived,
    WorkflowDefined,
    WorkflowPaused,
    WorkflowUpdated,
)
from flowlog.schemas.model import Event
from flowlog.schemas.sdk import EventProducer
from pydantic import BaseModel, Field

ACTOR_HEADER = "flowlog-actor"
REASON_HEADER = "flowlog-reason"
MAX_BULK = 100_000


class Definitions(Protocol):
    """What the gateway needs to know of the definitions (followed from Kafka)."""

    def latest(self, workflow_id: str) -> int: ...
    def tenant(self, workflow_id: str) -> str | None: ...
    def latest_body(self, workflow_id: str) -> dict[str, Any] | None: ...
    async def catch_up(self) -> None: ...


@dataclass
class Services:
    auth: AuthService
    producer: EventProducer
    definitions: Definitions


class ExecuteBody(BaseModel):
    input: dict[str, Any] = Field(default_factory=dict, description="The trigger's input.")
    dedup_key: str | None = Field(None, description="Same key, same execution id.")
    version: int = Field(0, ge=0, description="Pin this version (0: the newest).")
    reason: str = Field("", description="Why (recorded in the audit trail).")


class ReasonBody(BaseModel):
    reason: str = Field("", description="Why (recorded in the audit trail).")


class ExecutionCommand(BaseModel):
    workflow_id: str = Field(..., description="The execution's workflow.")
    reason: str = ""


class RetryBody(ExecutionCommand):
    node_id: str


def audit_headers(principal: Principal, reason: str) -> dict[str, str]:
    return {ACTOR_HEADER: principal.label, REASON_HEADER: reason}


def create_app(services_factory: Callable[[], AbstractAsyncContextManager[Services]]
               ) -> FastAPI:
    holder: dict[str, Services] = {}
    auth = deps.Authenticator()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with services_factory() as services:
            holder["s"] = services
            auth.service = services.auth
            yield

    app = FastAPI(title="flowlog command gateway", lifespan=lifespan,
                  description="Write endpoints: each becomes an event on Kafka, with who "
                              "and why. Authenticate with a Bearer token or X-API-Key.")
    deps.install(app)
    app.include_router(deps.router(auth))

    def s() -> Services:
        return holder["s"]

    async def tenant_of(workflow_id: str) -> str:
        tenant = s().definitions.tenant(workflow_id)
        if tenant is None:  # perhaps just created: read the definitions to their end
            await s().definitions.catch_up()
            tenant = s().definitions.tenant(workflow_id)
        if tenant is None:
            raise HTTPException(404, f"workflow {workflow_id!r} is unknown: create it first "
                                     "(POST /workflows)")
        return tenant

    async def publish(events: list[Event], principal: Principal, reason: str) -> None:
        try:
            await asyncio.gather(*(s().producer.publish_async(
                e, headers=audit_headers(principal, reason)) for e in events))
        except PublishError as exc:
            raise HTTPException(503, f"could not publish ({exc}): retry",
                                headers={"Retry-After": "1"}) from None

    operator_exec = auth.require("operator", "executions:write")
    operator_wf = auth.require("operator", "workflows:write")
    admin_wf = auth.require("admin", "workflows:write")

    async def definition_of(request: Request) -> dict[str, Any]:
        text = (await request.body()).decode("utf-8", "replace")
        ctype = request.headers.get("content-type", "")
        try:
            raw = parse_text(text, filename="body.json" if "json" in ctype else "body.yaml")
        except DefinitionParseError as exc:
            raise HTTPException(400, str(exc)) from None
        spec, issues = validate_definition(raw)
        if spec is None:
            raise HTTPException(422, {"error": "invalid definition",
                                      "issues": [i.render() for i in issues]})
        return raw

    async def define(request: Request, principal: Principal, workflow_id: str | None
                     ) -> dict[str, Any]:
        raw = await definition_of(request)
        wid = raw["id"]
        if workflow_id is not None and wid != workflow_id:
            raise HTTPException(422, f"the body's id {wid!r} differs from the path's "
                                     f"{workflow_id!r}: make them equal")
        await s().definitions.catch_up()  # versions are numbered from what is published
        owner = s().definitions.tenant(wid)
        tenant = owner or request.query_params.get("tenant") or principal.tenant
        principal.require("admin", "workflows:write", tenant)
        latest = s().definitions.latest(wid)
        if workflow_id is None and latest:
            raise HTTPException(409, f"workflow {wid!r} exists (v{latest}): update it with "
                                     f"PUT /workflows/{wid}")
        if workflow_id is not None and not latest:
            raise HTTPException(404, f"workflow {wid!r} is unknown: create it with "
                                     "POST /workflows")
        body = {k: v for k, v in raw.items() if k != "version"}
        reason = request.query_params.get("reason", "")
        if latest and s().definitions.latest_body(wid) == body:
            return {"workflow_id": wid, "version": latest, "changed": False}
        version = latest + 1
        cls = WorkflowDefined if not latest else WorkflowUpdated
        await publish([cls(workflow_id=wid, workflow_version=version, version=version,
                           definition=body, tenant=tenant)], principal, reason)
        return {"workflow_id": wid, "version": version, "changed": True}

    @app.post("/workflows", status_code=201, summary="Create a workflow (admin)",
              openapi_extra={"requestBody": {"content": {
                  "application/json": {"schema": {"type": "object"}},
                  "application/yaml": {"schema": {"type": "string"}}}}})
    async def create(request: Request, principal: Principal = Depends(admin_wf)
                     ) -> dict[str, Any]:
        return await define(request, principal, None)

    @app.put("/workflows/{workflow_id}", summary="Publish a new version (admin)")
    async def update(workflow_id: str, request: Request,
                     principal: Principal = Depends(admin_wf)) -> dict[str, Any]:
        return await define(request, principal, workflow_id)

    async def status_change(workflow_id: str, principal: Principal, reason: str,
                            kind: str) -> dict[str, Any]:
        tenant = await tenant_of(workflow_id)
        principal.require("admin" if kind == "archive" else "operator", "workflows:write",
                          tenant)
        version = s().definitions.latest(workflow_id)
        common = {"workflow_id": workflow_id, "workflow_version": version, "tenant": tenant}
        event: Event = (WorkflowActivated(**common) if kind == "activate"
                        else WorkflowPaused(**common, reason=reason) if kind == "pause"
                        else WorkflowArchived(**common))
        await publish([event], principal, reason)
        return {"workflow_id": workflow_id, "version": version, "event": event.event_type}

    @app.post("/workflows/{workflow_id}/activate", status_code=202,
              summary="Activate the newest version (operator)")
    async def activate(workflow_id: str, body: ReasonBody | None = None,
                       principal: Principal = Depends(operator_wf)) -> dict[str, Any]:
        return await status_change(workflow_id, principal, (body or ReasonBody()).reason,
                                   "activate")

    @app.post("/workflows/{workflow_id}/pause", status_code=202,
              summary="Pause: new triggers are refused (operator)")
    async def pause(workflow_id: str, body: ReasonBody | None = None,
                    principal: Principal = Depends(operator_wf)) -> dict[str, Any]:
        return await status_change(workflow_id, principal, (body or ReasonBody()).reason,
                                   "pause")

    @app.delete("/workflows/{workflow_id}", status_code=202,
                summary="Archive (delete) a workflow (admin)")
    async def delete(workflow_id: str, reason: str = "",
                     principal: Principal = Depends(admin_wf)) -> dict[str, Any]:
        return await status_change(workflow_id, principal, reason, "archive")

    @app.post("/workflows/{workflow_id}/execute", status_code=202,
              summary="Start an execution (operator)")
    async def execute(workflow_id: str, body: ExecuteBody,
                      principal: Principal = Depends(operator_exec)) -> dict[str, Any]:
        tenant = await tenant_of(workflow_id)
        principal.require("operator", "executions:write", tenant)
        try:
            event = TriggerReceived(workflow_id=workflow_id, workflow_version=body.version,
                                    source="manual", input=body.input,
                                    dedup_key=body.dedup_key, tenant=tenant)
        except EventValidationError as exc:
            raise HTTPException(422, str(exc)) from None
        await publish([event], principal, body.reason)
        return {"execution_id": event.execution_id, "workflow_id": workflow_id}

    @app.post("/workflows/{workflow_id}/execute/bulk", status_code=202,
              summary="Start one execution per JSONL line (operator)",
              openapi_extra={"requestBody": {"content": {
                  "application/x-ndjson": {"schema": {"type": "string"}}}}})
    async def bulk(workflow_id: str, request: Request, reason: str = "",
                   principal: Principal = Depends(operator_exec)) -> dict[str, Any]:
        tenant = await tenant_of(workflow_id)
        principal.require("operator", "executions:write", tenant)
        events, errors = [], []
        for n, line in enumerate((await request.body()).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = orjson.loads(line)
                if not isinstance(item, dict):
                    raise ValueError("a line must be a JSON object")
                spec = item if "input" in item else {"input": item}
                body = ExecuteBody.model_validate(spec)
                events.append(TriggerReceived(
                    workflow_id=workflow_id, workflow_version=body.version, source="manual",
                    input=body.input, dedup_key=body.dedup_key, tenant=tenant))
            except (ValueError, EventValidationError) as exc:
                errors.append(f"line {n}: {exc}".splitlines()[0])
        if errors:
            raise HTTPException(422, {"error": "bad lines: nothing was published",
                                      "lines": errors[:100]})
        if len(events) > MAX_BULK:
            raise HTTPException(413, f"{len(events)} lines: at most {MAX_BULK} per request")
        summary = await asyncio.to_thread(s().producer.publish_many, events,
                                          headers=audit_headers(principal, reason))
        if not summary.ok:
            raise HTTPException(503, f"publishing failed for part of the batch: {summary}; "
                                     "retry with the same dedup keys to stay idempotent")
        return {"workflow_id": workflow_id, "accepted": len(events),
                "execution_ids": [e.execution_id for e in events]}

    async def execution_command(event: Event, principal: Principal, reason: str
                                ) -> dict[str, Any]:
        principal.require("operator", "executions:write", await tenant_of(event.workflow_id))
        await publish([event], principal, reason)
        return {"execution_id": event.execution_id, "event": event.event_type}

    @app.post("/executions/{execution_id}/cancel", status_code=202,
              summary="Cancel an execution (operator)")
    async def cancel(execution_id: str, body: ExecutionCommand,
                     principal: Principal = Depends(operator_exec)) -> dict[str, Any]:
        return await execution_command(CancelRequested(
            execution_id=execution_id, workflow_id=body.workflow_id, workflow_version=0,
            reason=body.reason, tenant=await tenant_of(body.workflow_id)), principal, body.reason)

    @app.post("/executions/{execution_id}/retry", status_code=202,
              summary="Retry a dead-lettered node (operator)")
    async def retry(execution_id: str, body: RetryBody,
                    principal: Principal = Depends(operator_exec)) -> dict[str, Any]:
        return await execution_command(RetryNodeRequested(
            execution_id=execution_id, workflow_id=body.workflow_id, workflow_version=0,
            node_id=body.node_id, reason=body.reason, tenant=await tenant_of(body.workflow_id)),
            principal, body.reason)

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail = exc.detail if isinstance(exc.detail, dict) else {"error": exc.detail}
        return JSONResponse(detail, status_code=exc.status_code, headers=exc.headers)

    app.add_exception_handler(HTTPException, http_error)
    return app
