"""Live status over Server-Sent Events, fed by the projector's Redis pub/sub
(`projections.live`): the message is a nudge, the read model is the truth.

* ``/api/live/executions/{id}``: event ``status`` whose ``id`` is the execution's
  ``last_seq`` (it only grows) and whose data is the execution's summary row.
* ``/api/live/workflows/{id}``: the same for every execution of a workflow; the event id is
  the newest ``last_event_at`` sent (microseconds since the epoch).

Nothing is missed across a reconnect: the stream subscribes first, then reads the read
model for what changed after ``Last-Event-ID`` (header, or ``?last_event_id=``), then
forwards nudges, and re-reads the row every ``FLOWLOG_API_LIVE_POLL_S`` when pub/sub is
quiet (pub/sub is at-most-once). An execution's update is sent only when its ``last_seq``
is newer than the one sent before, so the client sees each state at most once per stream.
"""


import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from flowlog.api.auth.model import Principal
from flowlog.api.query import models as m
from flowlog.api.query.services import Services
from flowlog.api.query.sql import Query as Q
from flowlog.api.query.sql import Scope, visible_workflow
from flowlog.projections.live import channel_all, channel_of
from sse_starlette.sse import EventSourceResponse, ServerSentEvent

SUMMARY = ", ".join(m.ExecutionSummary.model_fields)
SSE_DOC: dict[int | str, dict[str, Any]] = {200: {
    "description": "text/event-stream: `event: status`, `id`, `data` = an ExecutionSummary "
                   "(JSON).", "content": {"text/event-stream": {"schema": {"type": "string"}}}}}
#: executions a workflow stream remembers the last sent seq of
REMEMBER = 50_000


def _epoch_us(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


def _from_us(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def last_event_id(request: Request, query_value: str | None) -> int:
    raw = request.headers.get("last-event-id") or query_value
    if raw is None or raw == "":
        return 0
    if not raw.isdigit() or len(raw) > 19:
        raise HTTPException(422, f"Last-Event-ID {raw[:40]!r} is not an id this stream sent "
                                 "(a whole number): reconnect without it to start afresh")
    return int(raw)


def _event(row: Any, event_id: int) -> ServerSentEvent:
    data = m.ExecutionSummary.model_validate(dict(row)).model_dump_json()
    return ServerSentEvent(data=data, event="status", id=str(event_id))


def routes(api: APIRouter, s: Callable[[], Services],
           dep: Callable[[Request], Awaitable[Principal]]) -> None:
    ExP = Annotated[Principal, Depends(dep)]

    @api.get("/live/executions/{execution_id}", tags=["live"], responses=SSE_DOC,
             summary="Server-Sent Events: each new status of one execution")
    async def live_execution(execution_id: str, request: Request, principal: ExP,
                             last_event_id_q: Annotated[str | None, Query(
                                 alias="last_event_id", max_length=20)] = None,
                             ) -> EventSourceResponse:
        sv = s()
        q = Q().where("execution_id = {}", execution_id).scope(Scope.of(principal))
        sql = f"SELECT {SUMMARY} FROM workflow_executions{q.sql()}"
        if await sv.pool.fetchrow(sql, *q.args) is None:
            raise HTTPException(404, f"execution {execution_id!r} is not among the caller's "
                                     "executions")
        sent = last_event_id(request, last_event_id_q)
        pubsub = sv.redis.pubsub()
        await pubsub.subscribe(channel_of(sv.settings, execution_id))  # before the read

        async def stream() -> AsyncIterator[ServerSentEvent]:
            nonlocal sent
            try:
                async for msg in _nudges(pubsub, sv.settings.api_live_poll_s, first=True):
                    if msg is not None and msg.get("id", 0) <= sent:
                        continue
                    row = await sv.pool.fetchrow(sql, *q.args)
                    if row is not None and row["last_seq"] > sent:
                        sent = row["last_seq"]
                        yield _event(row, sent)
            finally:
                await pubsub.aclose()

        return EventSourceResponse(stream(), ping=15, send_timeout=30)

    @api.get("/live/workflows/{workflow_id}", tags=["live"], responses=SSE_DOC,
             summary="Server-Sent Events: each new status of any execution of a workflow")
    async def live_workflow(workflow_id: str, request: Request, principal: ExP,
                            last_event_id_q: Annotated[str | None, Query(
                                alias="last_event_id", max_length=20)] = None,
                            ) -> EventSourceResponse:
        sv = s()
        scope = Scope.of(principal)
        cursor = last_event_id(request, last_event_id_q)
        seen = Q().where("w.workflow_id = {}", workflow_id)
        visible_workflow(seen, scope)
        if await sv.pool.fetchrow(f"SELECT 1 FROM workflows w{seen.sql()}", *seen.args) is None:
            raise HTTPException(404, f"workflow {workflow_id!r} is not among the caller's "
                                     "workflows")
        skew = timedelta(seconds=sv.settings.api_live_resume_skew_s)
        pubsub = sv.redis.pubsub()
        await pubsub.subscribe(channel_all(sv.settings))  # before the read
        one = Q().where("workflow_id = {}", workflow_id).scope(scope)
        one_sql = (f"SELECT {SUMMARY} FROM workflow_executions{one.sql()} AND "
                   f"execution_id = ${len(one.args) + 1}")
        seqs: OrderedDict[str, int] = OrderedDict()

        def fresh(row: Any) -> bool:
            if seqs.get(row["execution_id"], 0) >= row["last_seq"]:
                return False
            seqs[row["execution_id"]] = row["last_seq"]
            seqs.move_to_end(row["execution_id"])
            while len(seqs) > REMEMBER:
                seqs.popitem(last=False)
            return True

        async def since(us: int) -> list[Any]:
            q = Q().where("workflow_id = {}", workflow_id).scope(scope)
            q.where("last_event_at >= {}", _from_us(us) - skew)
            return list(await sv.pool.fetch(
                f"SELECT {SUMMARY} FROM workflow_executions{q.sql()} "
                "ORDER BY last_event_at, execution_id LIMIT 1000", *q.args))

        async def stream() -> AsyncIterator[ServerSentEvent]:
            nonlocal cursor
            try:
                if cursor:  # the gap since the client's last event
                    for row in await since(cursor):
                        if fresh(row):
                            cursor = max(cursor, _epoch_us(row["last_event_at"]))
                            yield _event(row, cursor)
                else:  # a new client: from the newest change it could have read
                    q = Q().where("workflow_id = {}", workflow_id).scope(scope)
                    newest = await sv.pool.fetchval(
                        f"SELECT max(last_event_at) FROM workflow_executions{q.sql()}", *q.args)
                    cursor = _epoch_us(newest) if newest is not None else 0
                async for msg in _nudges(pubsub, sv.settings.api_live_poll_s):
                    if msg is None:  # quiet: poll the read model
                        rows = await since(cursor) if cursor else []
                    elif msg.get("workflow_id") != workflow_id or (
                            scope.tenants is not None and msg.get("tenant")
                            not in scope.tenants):
                        continue
                    else:
                        found = await sv.pool.fetchrow(one_sql, *one.args,
                                                       msg.get("execution_id"))
                        rows = [found] if found is not None else []
                    for row in rows:
                        if fresh(row):
                            cursor = max(cursor, _epoch_us(row["last_event_at"]))
                            yield _event(row, cursor)
            finally:
                await pubsub.aclose()

        return EventSourceResponse(stream(), ping=15, send_timeout=30)


async def _nudges(pubsub: Any, poll_s: float, first: bool = False
                  ) -> AsyncIterator[dict[str, Any] | None]:
    """Decoded pub/sub messages; None to say "read the table" (first, and when quiet)."""
    import orjson

    if first:
        yield None
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    while True:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        if msg is None:
            if loop.time() - quiet_since >= poll_s:
                quiet_since = loop.time()
                yield None
            continue
        quiet_since = loop.time()
        try:
            body = orjson.loads(msg["data"])
        except (orjson.JSONDecodeError, TypeError):
            continue
        if isinstance(body, dict):
            yield body
