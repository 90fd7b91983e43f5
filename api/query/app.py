"""The query API's endpoints (FastAPI; OpenAPI at /openapi.json, docs at /docs). GET only.

Every ``/api`` endpoint authenticates (401), checks role and scope (403) and rate-limits
(429) through ``api/auth``; every SQL statement carries the caller's tenants in its WHERE
clause (``sql.Scope``), so a row of another tenant is never read, let alone returned (a
detail of another tenant's execution is a 404, like one that does not exist). Lists are
keyset-paginated: ``next_cursor`` of a page is the ``cursor`` of the next.
"""


import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import asyncpg
import orjson
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from flowlog.api.auth import deps
from flowlog.api.auth.model import Principal
from flowlog.api.query import models as m
from flowlog.api.query import search_attributes as sattrs
from flowlog.api.query.services import Services
from flowlog.api.query.sql import Query as Q
from flowlog.api.query.sql import Scope, decode_cursor, encode_cursor, visible_workflow
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

STATUSES = ("pending", "queued", "running", "waiting", "incident", "succeeded", "failed",
            "cancelled", "rejected")
Status = Literal["pending", "queued", "running", "waiting", "incident", "succeeded", "failed",
                 "cancelled", "rejected"]
FINAL = ("succeeded", "failed", "cancelled", "rejected")
BUCKETS = {"1m": timedelta(minutes=1), "5m": timedelta(minutes=5),
           "15m": timedelta(minutes=15), "1h": timedelta(hours=1), "6h": timedelta(hours=6),
           "1d": timedelta(days=1)}
Bucket = Literal["1m", "5m", "15m", "1h", "6h", "1d"]
MAX_BUCKETS = 2000
EXECUTION_SORTS = {"created_at": ("created_at", "ASC"), "-created_at": ("created_at", "DESC"),
                   "last_event_at": ("last_event_at", "ASC"),
                   "-last_event_at": ("last_event_at", "DESC")}
ExecutionSort = Literal["created_at", "-created_at", "last_event_at", "-last_event_at"]
SUMMARY_COLUMNS = ", ".join(m.ExecutionSummary.model_fields)
DETAIL_COLUMNS = ", ".join(m.ExecutionDetail.model_fields.keys()
                           - {"node_run_rows", "timeline", "outputs", "events"})
NODE_RUN_COLUMNS = ", ".join(m.NodeRun.model_fields)
EVENT_COLUMNS = ", ".join(m.EventIndexRow.model_fields)
EVENTS_IN_DETAIL = 200
NODE_RUN_FIELDS = tuple(m.NodeRun.model_fields)
EVENT_FIELDS = tuple(m.EventIndexRow.model_fields)
#: The detail in one round trip: the execution's row, its node runs and first events as
#: arrays of anonymous records (decoded by asyncpg into tuples of Python values), and the
#: node ids of its workflow version. ``{where}`` and ``{scope_n}`` hold the caller's tenants.
DETAIL_SQL = (
    "SELECT " + ", ".join(f"x.{c}" for c in DETAIL_COLUMNS.split(", ")) + ", "
    "ARRAY(SELECT ROW(" + ", ".join(f"n.{c}" for c in NODE_RUN_FIELDS) + ") FROM node_runs n "
    "WHERE n.execution_id = x.execution_id{scope_n} ORDER BY n.created_at, n.node_id, "
    "n.attempt) AS _runs, "
    "(SELECT ARRAY(SELECT jsonb_object_keys(v.definition->'nodes')) FROM workflow_versions v "
    "WHERE v.workflow_id = x.workflow_id AND v.version = x.workflow_version AND "
    "jsonb_typeof(v.definition->'nodes') = 'object') AS _nodes, "
    "ARRAY(SELECT ROW(" + ", ".join(f"e.{c}" for c in EVENT_FIELDS) + ") FROM "
    "execution_events e WHERE e.execution_id = x.execution_id ORDER BY e.seq "
    f"LIMIT {EVENTS_IN_DETAIL}) AS _events "
    "FROM workflow_executions x{where}")

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or bad credentials: send `Authorization: Bearer <token>` or "
                         "`X-API-Key`."},
    403: {"description": "The role, scope or tenant does not allow this."},
    404: {"description": "Not found in the caller's tenants."},
    422: {"description": "A parameter is invalid (the body names it and the fix)."},
    429: {"description": "Rate limit of the principal; see Retry-After."},
}

Limit = Annotated[int, Query(ge=1, le=500, description="Items per page (1..500).")]
Cursor = Annotated[str | None, Query(max_length=512,
                                     description="next_cursor of the previous page.")]
TenantQ = Annotated[str | None, Query(max_length=200, description="Only this tenant (one "
                                      "of the caller's).")]


def json_response(data: Any) -> Response:
    """JSON bytes by orjson, bypassing FastAPI's validation and serialisation of the
    response (the route's ``response_model`` still makes the OpenAPI document; the data are
    read-model rows whose columns are exactly the model's fields, so the answer is the one
    pydantic would give: UTC times end in ``Z`` as pydantic writes them)."""
    return Response(orjson.dumps(data, option=orjson.OPT_UTC_Z), media_type="application/json")


def utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _keyset(q: Q, columns: tuple[str, ...], direction: str, cursor: str | None,
            kinds: tuple[type, ...]) -> None:
    if cursor:
        values = decode_cursor(cursor, kinds)
        op = "<" if direction == "DESC" else ">"
        q.where(f"({', '.join(columns)}) {op} ({', '.join('{}' for _ in columns)})", *values)


def _order(columns: tuple[str, ...], direction: str) -> str:
    return ", ".join(f"{c} {direction}" for c in columns)


def _page(rows: list[Any], limit: int, key: Callable[[Any], tuple[Any, ...]]
          ) -> tuple[list[dict[str, Any]], str | None]:
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(*key(rows[-1])) if more and rows else None
    return [dict(r) for r in rows], nxt


def _range(start: datetime | None, end: datetime | None, bucket: str
           ) -> tuple[datetime, datetime, timedelta]:
    end = utc(end) or datetime.now(UTC)
    start = utc(start) or end - timedelta(hours=1)
    step = BUCKETS[bucket]
    if start >= end:
        raise HTTPException(422, f"from {start.isoformat()} is not before to "
                                 f"{end.isoformat()}: give from < to")
    try:
        count = (end - start) / step
    except OverflowError:
        count = float("inf")
    if count > MAX_BUCKETS:
        raise HTTPException(422, f"{start.isoformat()}..{end.isoformat()} in {bucket} buckets "
                                 f"is {int(min(count, 1e18))} buckets (at most {MAX_BUCKETS}): "
                                 "narrow the range or choose a larger bucket")
    return start, end, step


def timeline(definition_nodes: list[str], runs: list[dict[str, Any]],
             node_status: dict[str, Any]) -> list[dict[str, Any]]:
    """One bar per node run; each defined node that never ran gets one bar with no start."""
    bars = [{"node_id": r["node_id"], "attempt": r["attempt"], "node_type": r["node_type"],
             "status": r["status"], "start": r["started_at"] or r["scheduled_at"]
             or r["created_at"], "end": r["finished_at"], "duration_ms": r["duration_ms"]}
            for r in runs]
    ran = {r["node_id"] for r in runs}
    for node in definition_nodes:
        if node not in ran:
            st = node_status.get(node)
            status = st[0] if isinstance(st, list) and st else "not_run"
            bars.append({"node_id": node, "attempt": 0, "node_type": None, "status": status,
                         "start": None, "end": None, "duration_ms": None})
    return bars


def create_app(services_factory: Callable[[], AbstractAsyncContextManager[Services]],
               static_dir: Path | None = None) -> FastAPI:
    holder: dict[str, Services] = {}
    auth = deps.Authenticator()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with services_factory() as services:
            holder["s"] = services
            auth.service = services.auth
            yield

    app = FastAPI(
        title="flowlog query API", lifespan=lifespan, version="1",
        description="Read-only: workflows, executions, node runs, events, state as of a "
                    "seq, triggers, webhooks, schedules, analytics, lineage and live status "
                    "(SSE). Authenticate with `Authorization: Bearer <token>` or `X-API-Key`.")
    deps.install(app)

    async def data_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"a parameter holds a value PostgreSQL cannot take "
                                       f"({type(exc).__name__}: {exc}); remove NUL and "
                                       "invalid characters"}, status_code=422)

    app.add_exception_handler(asyncpg.DataError, data_error)

    def s() -> Services:
        return holder["s"]

    wf_read = auth.require("viewer", "workflows:read")
    ex_read = auth.require("viewer", "executions:read")
    sc_read = auth.require("viewer", "schedules:read")
    WfP = Annotated[Principal, Depends(wf_read)]
    ExP = Annotated[Principal, Depends(ex_read)]
    ScP = Annotated[Principal, Depends(sc_read)]

    api = APIRouter(prefix="/api", responses=ERRORS)

    # --- workflows -----------------------------------------------------------------------
    @api.get("/workflows", response_model=m.WorkflowPage, tags=["workflows"],
             summary="Workflows visible to the caller, by id")
    async def workflows(principal: WfP, status: Literal["draft", "active", "paused",
                                                        "archived"] | None = None,
                        tenant: TenantQ = None, limit: Limit = 50, cursor: Cursor = None
                        ) -> dict[str, Any]:
        q = Q()
        visible_workflow(q, Scope.of(principal, tenant))
        if status:
            q.where("w.status = {}", status)
        _keyset(q, ("w.workflow_id",), "ASC", cursor, (str,))
        rows = await s().pool.fetch(
            f"SELECT w.* FROM workflows w{q.sql()} ORDER BY w.workflow_id LIMIT {limit + 1}",
            *q.args)
        items, nxt = _page(rows, limit, lambda r: (r["workflow_id"],))
        return {"items": items, "next_cursor": nxt}

    async def _workflow(principal: Principal, workflow_id: str) -> dict[str, Any]:
        q = Q().where("w.workflow_id = {}", workflow_id)
        visible_workflow(q, Scope.of(principal))
        row = await s().pool.fetchrow(f"SELECT w.* FROM workflows w{q.sql()}", *q.args)
        if row is None:
            raise HTTPException(404, f"workflow {workflow_id!r} is not among the caller's "
                                     "workflows (GET /api/workflows lists them)")
        return dict(row)

    @api.get("/workflows/{workflow_id}", response_model=m.WorkflowDetail, tags=["workflows"],
             summary="A workflow and its versions (without definitions)")
    async def workflow(workflow_id: str, principal: WfP) -> dict[str, Any]:
        out = await _workflow(principal, workflow_id)
        out["versions"] = [dict(r) for r in await s().pool.fetch(
            "SELECT workflow_id, version, name, node_count, defined_at FROM workflow_versions "
            "WHERE workflow_id = $1 ORDER BY version", workflow_id)]
        return out

    @api.get("/workflows/{workflow_id}/versions/{version}", response_model=m.WorkflowVersion,
             tags=["workflows"], summary="One version of a workflow with its definition")
    async def workflow_version(workflow_id: str, version: int, principal: WfP
                               ) -> dict[str, Any]:
        await _workflow(principal, workflow_id)
        if not 1 <= version < 2**31:
            raise HTTPException(422, f"version {version} is not a version number (1..)")
        row = await s().pool.fetchrow(
            "SELECT * FROM workflow_versions WHERE workflow_id = $1 AND version = $2",
            workflow_id, version)
        if row is None:
            raise HTTPException(404, f"workflow {workflow_id!r} has no version {version}")
        return dict(row)

    # --- executions ----------------------------------------------------------------------
    @api.get("/executions", response_model=m.ExecutionPage, tags=["executions"],
             summary="Executions, filtered, sorted and keyset-paginated",
             description=sattrs.FILTER_DOC, responses={400: {"description": "A search "
                                                           "attribute filter is invalid."}})
    async def executions(
        principal: ExP, request: Request,
        workflow: Annotated[str | None, Query(max_length=200)] = None,
        status: Annotated[list[Status] | None, Query(description="Any of these (repeat).")
                          ] = None,
        trigger_source: Annotated[str | None, Query(max_length=200, description=(
            "How it was triggered: webhook, schedule, manual, event, ..."))] = None,
        tenant: TenantQ = None,
        created_from: Annotated[datetime | None, Query(description="created_at >= this")
                                ] = None,
        created_to: Annotated[datetime | None, Query(description="created_at < this")] = None,
        sort: ExecutionSort = "-created_at", limit: Limit = 50, cursor: Cursor = None,
    ) -> Response:
        q = Q().scope(Scope.of(principal, tenant))
        if workflow:
            q.where("workflow_id = {}", workflow)
        if status:
            q.where("status = ANY({}::text[])", sorted(set(status)))
        if trigger_source:
            q.where("trigger_source = {}", trigger_source)
        if created_from:
            q.where("created_at >= {}", utc(created_from))
        if created_to:
            q.where("created_at < {}", utc(created_to))
        await sattrs.add_filters(q, request, s().pool)
        column, direction = EXECUTION_SORTS[sort]
        keys = (column, "execution_id")
        _keyset(q, keys, direction, cursor, (datetime, str))
        rows = await s().pool.fetch(
            f"SELECT {SUMMARY_COLUMNS} FROM workflow_executions{q.sql()} "
            f"ORDER BY {_order(keys, direction)} LIMIT {limit + 1}", *q.args)
        items, nxt = _page(rows, limit, lambda r: (r[column], r["execution_id"]))
        return json_response({"items": items, "next_cursor": nxt})

    async def _execution(conn: Any, principal: Principal, execution_id: str,
                         columns: str = SUMMARY_COLUMNS) -> dict[str, Any]:
        q = Q().where("execution_id = {}", execution_id).scope(Scope.of(principal))
        row = await conn.fetchrow(f"SELECT {columns} FROM workflow_executions{q.sql()}",
                                  *q.args)
        if row is None:
            raise HTTPException(404, f"execution {execution_id!r} is not among the caller's "
                                     "executions (GET /api/executions lists them)")
        return dict(row)

    @api.get("/executions/{execution_id}", response_model=m.ExecutionDetail,
             tags=["executions"], summary="An execution with its node runs, timeline, outputs, "
             "incidents and first events")
    async def execution(execution_id: str, principal: ExP) -> dict[str, Any]:
        scope = Scope.of(principal)
        async with s().pool.acquire() as conn:
            out = await _execution(conn, principal, execution_id, DETAIL_COLUMNS)
            q = Q().where("execution_id = {}", execution_id).scope(scope)
            runs = [dict(r) for r in await conn.fetch(
                f"SELECT {NODE_RUN_COLUMNS} FROM node_runs{q.sql()} "
                "ORDER BY created_at, node_id, attempt", *q.args)]
            nodes = await conn.fetchval(
                "SELECT ARRAY(SELECT jsonb_object_keys(definition->'nodes')) FROM "
                "workflow_versions WHERE workflow_id = $1 AND version = $2 AND "
                "jsonb_typeof(definition->'nodes') = 'object'",
                out["workflow_id"], out["workflow_version"])
            events = await conn.fetch(
                f"SELECT {EVENT_COLUMNS} FROM execution_events WHERE execution_id = $1 "
                f"ORDER BY seq LIMIT {EVENTS_IN_DETAIL}", execution_id)
        out["node_run_rows"] = runs
        out["timeline"] = timeline(list(nodes or ()), runs, out["node_status"] or {})
        outputs: dict[str, str | None] = {}
        for r in runs:
            outputs[r["node_id"]] = r["output_summary"]
        out["outputs"] = outputs
        out["events"] = [dict(e) for e in events]
        return out

    @api.get("/executions/{execution_id}/events", response_model=m.EventPage,
             tags=["executions"], summary="An execution's events index, by seq")
    async def execution_events(execution_id: str, principal: ExP,
                               after_seq: Annotated[int, Query(ge=0, lt=2**62)] = 0,
                               limit: Limit = 200) -> dict[str, Any]:
        q = Q().where("e.execution_id = {}", execution_id).where("e.seq > {}", after_seq)
        inner = Q(args=q.args).scope(Scope.of(principal), "x.tenant")
        exists = (" AND EXISTS (SELECT 1 FROM workflow_executions x WHERE x.execution_id = "
                  f"e.execution_id{' AND ' + ' AND '.join(inner.conds) if inner.conds else ''})")
        async with s().pool.acquire() as conn:
            await _execution(conn, principal, execution_id, "execution_id")
            rows = await conn.fetch(
                f"SELECT {EVENT_COLUMNS} FROM execution_events e{q.sql()}{exists} "
                f"ORDER BY e.seq LIMIT {limit + 1}", *q.args)
        items = [dict(r) for r in rows[:limit]]
        nxt = encode_cursor(items[-1]["seq"]) if len(rows) > limit else None
        return {"items": items, "next_cursor": nxt}

    async def _audit(principal: Principal, execution_id: str, call: Callable[[Any], Any]
                     ) -> Any:
        async with s().pool.acquire() as conn:
            await _execution(conn, principal, execution_id, "execution_id")
        return await s().audit.call(call)

    @api.get("/executions/{execution_id}/state", tags=["executions"],
             summary="The execution's state as of a seq or a time (audit store)")
    async def execution_state(
        execution_id: str, principal: ExP,
        at: Annotated[str, Query(min_length=1, max_length=64, description=(
            "A seq (12) or an ISO 8601 time (2025-01-06T09:00:02Z)."))],
    ) -> dict[str, Any]:
        from flowlog.projections.audit import operations

        out: dict[str, Any] = await _audit(
            principal, execution_id, lambda store: operations.state(store, execution_id, at))
        return out

    @api.get("/executions/{execution_id}/history", tags=["executions"],
             summary="Every event, node run, model and tool call and operator command")
    async def execution_history(execution_id: str, principal: ExP) -> dict[str, Any]:
        from flowlog.projections.audit import operations

        out: dict[str, Any] = await _audit(
            principal, execution_id, lambda store: operations.history(store, execution_id))
        return out

    @api.get("/executions/{execution_id}/lineage", tags=["executions"],
             summary="What an event or input of the execution caused, and what caused it")
    async def execution_lineage(
        execution_id: str, principal: ExP,
        item: Annotated[str | None, Query(max_length=200, description=(
            "An event id or input id of this execution (default: the execution)."))] = None,
    ) -> dict[str, Any]:
        from flowlog.projections.audit import operations

        out: dict[str, Any] = await _audit(
            principal, execution_id, lambda store: operations.lineage(store,
                                                                      item or execution_id))
        if out.get("execution_id") != execution_id:
            raise HTTPException(404, f"{item!r} is not an event or input of execution "
                                     f"{execution_id!r}")
        return out

    @api.get("/executions/{execution_id}/node-runs", response_model=list[m.NodeRun],
             tags=["executions"], summary="Every node run (attempt) of an execution")
    async def execution_node_runs(execution_id: str, principal: ExP) -> list[dict[str, Any]]:
        q = Q().where("execution_id = {}", execution_id).scope(Scope.of(principal))
        async with s().pool.acquire() as conn:
            await _execution(conn, principal, execution_id, "execution_id")
            rows = await conn.fetch(f"SELECT {NODE_RUN_COLUMNS} FROM node_runs{q.sql()} "
                                    "ORDER BY created_at, node_id, attempt", *q.args)
        return [dict(r) for r in rows]

    @api.get("/node-runs", response_model=m.NodeRunPage, tags=["executions"],
             summary="Node runs across executions, newest first")
    async def node_runs(
        principal: ExP, tenant: TenantQ = None,
        workflow: Annotated[str | None, Query(max_length=200)] = None,
        node_type: Annotated[str | None, Query(max_length=200)] = None,
        status: Annotated[str | None, Query(max_length=50)] = None,
        model: Annotated[str | None, Query(max_length=200)] = None,
        limit: Limit = 50, cursor: Cursor = None,
    ) -> dict[str, Any]:
        q = Q().scope(Scope.of(principal, tenant))
        for column, value in (("workflow_id", workflow), ("node_type", node_type),
                              ("status", status), ("model", model)):
            if value:
                q.where(f"{column} = {{}}", value)
        keys = ("created_at", "execution_id", "node_id", "attempt")
        _keyset(q, keys, "DESC", cursor, (datetime, str, str, int))
        rows = await s().pool.fetch(
            f"SELECT {NODE_RUN_COLUMNS} FROM node_runs{q.sql()} "
            f"ORDER BY {_order(keys, 'DESC')} LIMIT {limit + 1}", *q.args)
        items, nxt = _page(rows, limit, lambda r: tuple(r[k] for k in keys))
        return {"items": items, "next_cursor": nxt}

    # --- triggers, webhooks, schedules ----------------------------------------------------
    @api.get("/triggers", response_model=m.TriggerPage, tags=["ingress"],
             summary="Triggers (what started, queued or was rejected), newest first")
    async def triggers(
        principal: ExP, tenant: TenantQ = None,
        workflow: Annotated[str | None, Query(max_length=200)] = None,
        source: Annotated[str | None, Query(max_length=200)] = None,
        outcome: Literal["started", "queued", "rejected"] | None = None,
        limit: Limit = 50, cursor: Cursor = None,
    ) -> dict[str, Any]:
        q = Q().scope(Scope.of(principal, tenant))
        for column, value in (("workflow_id", workflow), ("source", source),
                              ("outcome", outcome)):
            if value:
                q.where(f"{column} = {{}}", value)
        keys = ("received_at", "execution_id")
        _keyset(q, keys, "DESC", cursor, (datetime, str))
        rows = await s().pool.fetch(
            f"SELECT * FROM triggers{q.sql()} ORDER BY {_order(keys, 'DESC')} "
            f"LIMIT {limit + 1}", *q.args)
        items, nxt = _page(rows, limit, lambda r: (r["received_at"], r["execution_id"]))
        return {"items": items, "next_cursor": nxt}

    @api.get("/webhooks", response_model=list[m.Webhook], tags=["ingress"],
             summary="Webhook registrations (secrets are references, never values)")
    async def webhooks(principal: WfP, tenant: TenantQ = None,
                       workflow: Annotated[str | None, Query(max_length=200)] = None
                       ) -> list[dict[str, Any]]:
        q = Q().scope(Scope.of(principal, tenant))
        if workflow:
            q.where("workflow_id = {}", workflow)
        rows = await s().pool.fetch(
            "SELECT path, workflow_id, workflow_version, trigger_index, tenant, method, "
            f"config, registered_at FROM webhook_registrations{q.sql()} ORDER BY path",
            *q.args)
        return [dict(r) for r in rows]

    @api.get("/schedules", response_model=list[m.Schedule], tags=["ingress"],
             summary="Schedules")
    async def schedules(principal: ScP, tenant: TenantQ = None,
                        workflow: Annotated[str | None, Query(max_length=200)] = None
                        ) -> list[dict[str, Any]]:
        q = Q().scope(Scope.of(principal, tenant))
        if workflow:
            q.where("workflow_id = {}", workflow)
        rows = await s().pool.fetch(
            "SELECT workflow_id, trigger_index, workflow_version, tenant, config, active, "
            f"since, cursor_at, updated_at FROM schedules{q.sql()} "
            "ORDER BY workflow_id, trigger_index", *q.args)
        return [dict(r) for r in rows]

    @api.get("/schedules/{workflow_id}/{trigger_index}/slots", response_model=m.SlotPage,
             tags=["ingress"], summary="The schedule ledger: each slot planned, fired, "
             "missed or skipped, newest first")
    async def schedule_slots(
        workflow_id: str, trigger_index: int, principal: ScP,
        state: Literal["planned", "fired", "missed", "skipped"] | None = None,
        slot_from: Annotated[datetime | None, Query(alias="from")] = None,
        slot_to: Annotated[datetime | None, Query(alias="to")] = None,
        limit: Limit = 100, cursor: Cursor = None,
    ) -> dict[str, Any]:
        if not -2**31 <= trigger_index < 2**31:
            raise HTTPException(422, f"trigger_index {trigger_index} is out of range")
        scope = Scope.of(principal)
        q = Q().where("sl.workflow_id = {}", workflow_id).where("sl.trigger_index = {}",
                                                                 trigger_index)
        inner = Q(args=q.args).scope(scope, "sc.tenant")
        q.conds.append("EXISTS (SELECT 1 FROM schedules sc WHERE sc.workflow_id = "
                       "sl.workflow_id AND sc.trigger_index = sl.trigger_index"
                       + "".join(f" AND {c}" for c in inner.conds) + ")")
        check = Q().where("workflow_id = {}", workflow_id).where(
            "trigger_index = {}", trigger_index).scope(scope)
        if await s().pool.fetchval(f"SELECT count(*) FROM schedules{check.sql()}",
                                   *check.args) == 0:
            raise HTTPException(404, f"no schedule {workflow_id}#{trigger_index} among the "
                                     "caller's (GET /api/schedules lists them)")
        if state:
            q.where("sl.state = {}", state)
        if slot_from:
            q.where("sl.slot_at >= {}", utc(slot_from))
        if slot_to:
            q.where("sl.slot_at < {}", utc(slot_to))
        _keyset(q, ("sl.slot_at",), "DESC", cursor, (datetime,))
        rows = await s().pool.fetch(
            "SELECT sl.workflow_id, sl.trigger_index, sl.slot_at, sl.slot_id, sl.state, "
            "sl.reason, sl.execution_id, sl.workflow_version, sl.recorded_at FROM "
            f"schedule_slots sl{q.sql()} ORDER BY sl.slot_at DESC LIMIT {limit + 1}", *q.args)
        items, nxt = _page(rows, limit, lambda r: (r["slot_at"],))
        return {"items": items, "next_cursor": nxt}

    # --- analytics -----------------------------------------------------------------------
    RangeFrom = Annotated[datetime | None, Query(alias="from", description=(
        "Start (inclusive); default: an hour before `to`."))]
    RangeTo = Annotated[datetime | None, Query(alias="to", description="End (exclusive); "
                                               "default: now.")]

    async def _analytics(principal: Principal, table: str, time_col: str, select: str,
                         group: str | None, groups: dict[str, str], start: datetime | None,
                         end: datetime | None, bucket: str, tenant: str | None,
                         workflow: str | None) -> tuple[datetime, datetime, list[Any]]:
        lo, hi, step = _range(start, end, bucket)
        q = Q().scope(Scope.of(principal, tenant))
        q.where(f"{time_col} >= {{}}", lo).where(f"{time_col} < {{}}", hi)
        if workflow:
            q.where("workflow_id = {}", workflow)
        g = groups[group] if group else "NULL::text"
        step_arg = q.arg(step)
        origin = q.arg(datetime(2000, 1, 1, tzinfo=UTC))
        rows = await s().pool.fetch(
            f"SELECT date_bin({step_arg}::interval, {time_col}, {origin}) AS bucket, "
            f"{g} AS grp, {select} FROM {table}{q.sql()} GROUP BY 1, 2 ORDER BY 1, 2",
            *q.args)
        return lo, hi, list(rows)

    @api.get("/analytics/executions", response_model=m.ExecutionAnalytics,
             tags=["analytics"], summary="Throughput, failure rate, duration percentiles, "
             "retries, tokens and cost per bucket")
    async def analytics_executions(
        principal: ExP, start: RangeFrom = None, end: RangeTo = None, bucket: Bucket = "1m",
        group_by: Literal["workflow", "tenant", "trigger_source"] | None = None,
        tenant: TenantQ = None, workflow: Annotated[str | None, Query(max_length=200)] = None,
    ) -> dict[str, Any]:
        lo, hi, rows = await _analytics(
            principal, "execution_facts", "created_at",
            "count(*) AS executions, count(*) FILTER (WHERE status = 'succeeded') AS "
            "succeeded, count(*) FILTER (WHERE status = 'failed') AS failed, count(*) FILTER "
            "(WHERE status IN ('succeeded', 'failed', 'cancelled')) AS finished, "
            "percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY duration_ms) AS "
            "pct, coalesce(sum(retries), 0) AS retries, coalesce(sum(dead_letters), 0) AS "
            "dead_letters, coalesce(sum(input_tokens), 0) AS input_tokens, "
            "coalesce(sum(output_tokens), 0) AS output_tokens, coalesce(sum(cost_usd), 0) AS "
            "cost_usd", group_by, {"workflow": "workflow_id", "tenant": "tenant",
                                   "trigger_source": "coalesce(trigger_source, 'unknown')"},
            start, end, bucket, tenant, workflow)
        seconds = BUCKETS[bucket].total_seconds()
        out = []
        for r in rows:
            pct = r["pct"] or [None, None, None]
            out.append({
                "bucket": r["bucket"], "group": r["grp"], "executions": r["executions"],
                "succeeded": r["succeeded"], "failed": r["failed"], "finished": r["finished"],
                "failure_rate": (r["failed"] / r["finished"]) if r["finished"] else None,
                "throughput_per_s": r["executions"] / seconds,
                "duration_p50_ms": pct[0], "duration_p95_ms": pct[1], "duration_p99_ms": pct[2],
                "retries": r["retries"], "dead_letters": r["dead_letters"],
                "input_tokens": r["input_tokens"], "output_tokens": r["output_tokens"],
                "cost_usd": r["cost_usd"]})  # fmt: skip
        return {"start": lo, "end": hi, "bucket": bucket, "group_by": group_by, "rows": out}

    @api.get("/analytics/nodes", response_model=m.NodeAnalytics, tags=["analytics"],
             summary="Node runs per bucket: failures, retries, durations, tokens and cost")
    async def analytics_nodes(
        principal: ExP, start: RangeFrom = None, end: RangeTo = None, bucket: Bucket = "1m",
        group_by: Literal["node_type", "model", "workflow", "tenant"] | None = None,
        tenant: TenantQ = None, workflow: Annotated[str | None, Query(max_length=200)] = None,
    ) -> dict[str, Any]:
        lo, hi, rows = await _analytics(
            principal, "node_run_facts", "created_at",
            "count(*) AS runs, count(*) FILTER (WHERE status IN ('failed', 'dead_lettered')) "
            "AS failed, count(*) FILTER (WHERE attempt > 1) AS retries, "
            "percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY duration_ms) AS pct, "
            "coalesce(sum(model_calls), 0) AS model_calls, coalesce(sum(input_tokens), 0) AS "
            "input_tokens, coalesce(sum(output_tokens), 0) AS output_tokens, "
            "coalesce(sum(cost_usd), 0) AS cost_usd", group_by,
            {"node_type": "coalesce(node_type, 'unknown')", "model": "coalesce(model, 'none')",
             "workflow": "workflow_id", "tenant": "tenant"},
            start, end, bucket, tenant, workflow)
        out = []
        for r in rows:
            pct = r["pct"] or [None, None]
            out.append({"bucket": r["bucket"], "group": r["grp"], "runs": r["runs"],
                        "failed": r["failed"], "retries": r["retries"],
                        "duration_p50_ms": pct[0], "duration_p95_ms": pct[1],
                        "model_calls": r["model_calls"], "input_tokens": r["input_tokens"],
                        "output_tokens": r["output_tokens"], "cost_usd": r["cost_usd"]})
        return {"start": lo, "end": hi, "bucket": bucket, "group_by": group_by, "rows": out}

    @api.get("/analytics/models", response_model=m.ModelAnalytics, tags=["analytics"],
             summary="Model calls per bucket: calls, tokens, cost, latency p95")
    async def analytics_models(
        principal: ExP, start: RangeFrom = None, end: RangeTo = None, bucket: Bucket = "1m",
        group_by: Literal["model", "provider", "workflow", "tenant"] | None = None,
        tenant: TenantQ = None, workflow: Annotated[str | None, Query(max_length=200)] = None,
    ) -> dict[str, Any]:
        lo, hi, rows = await _analytics(
            principal, "llm_call_facts", "occurred_at",
            "count(*) AS calls, coalesce(sum(input_tokens), 0) AS input_tokens, "
            "coalesce(sum(output_tokens), 0) AS output_tokens, coalesce(sum(cost_usd), 0) AS "
            "cost_usd, percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95",
            group_by, {"model": "model", "provider": "provider", "workflow": "workflow_id",
                       "tenant": "tenant"}, start, end, bucket, tenant, workflow)
        out = [{"bucket": r["bucket"], "group": r["grp"], "calls": r["calls"],
                "input_tokens": r["input_tokens"], "output_tokens": r["output_tokens"],
                "cost_usd": r["cost_usd"], "latency_p95_ms": r["p95"]} for r in rows]
        return {"start": lo, "end": hi, "bucket": bucket, "group_by": group_by, "rows": out}

    # --- live --------------------------------------------------------------------------
    from flowlog.api.query import live

    live.routes(api, s, ex_read)
    sattrs.routes(api, s, ex_read)
    app.include_router(api)

    # --- operations ----------------------------------------------------------------------
    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers",
             response_class=PlainTextResponse)
    async def healthz() -> str:
        return "ok\n"

    @app.get("/readyz", tags=["operations"], summary="Readiness: PostgreSQL and Redis answer",
             responses={503: {"description": "A dependency does not answer."}})
    async def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(s().pool.fetchval("SELECT 1"), 2)
            checks["postgresql"] = "ok"
        except Exception as exc:
            checks["postgresql"] = repr(exc)
        try:
            await asyncio.wait_for(s().redis.ping(), 2)
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = repr(exc)
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ok, **checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics (request latency "
             "by route: flowlog_http_request_seconds)", response_class=PlainTextResponse)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    if static_dir is not None and (static_dir / "index.html").exists():
        app.mount("/dashboard", StaticFiles(directory=static_dir, html=True),
                  name="dashboard")

        @app.get("/", include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse("/dashboard/")

    return app
