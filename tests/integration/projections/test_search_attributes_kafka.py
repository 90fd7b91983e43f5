"""Search attributes with the real processes on Kafka: the read-model projector, the audit
projector and the search-attributes evaluator (`flowlog worker search-attributes`'s `run`)
consume histories published as the orchestrator does; an attribute declared before and one
declared while they run both end with the values a fresh evaluation gives, for executions
published before and after."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from flowlog.aggregates.execution.events import ExecutionEvent
from flowlog.projections import search_attributes as sa
from flowlog.projections import search_attributes_store as store
from flowlog.projections.audit.projector import run as audit_run
from flowlog.projections.search_attributes_worker import run as evaluator_run

from flowlog.settings import Settings
from tests.integration.projections.support import Log, executions, setup
from tests.integration.projections.test_projector import running

pytestmark = pytest.mark.integration

RETRIES = ("retries", "int", 'events.filter(e, e.type == "NodeRetryScheduled").size()')
STATUS = ("final_status", "keyword", "execution.status")


async def until(what: str, check: Callable[[], Awaitable[bool]], within: float = 120) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, f"not within {within}s: {what}"
        await asyncio.sleep(0.2)


async def test_live_and_backfill_through_the_real_processes(
        settings: Settings, pg_schema: str, kafka_bootstrap: str, redis_url: str) -> None:
    s = settings.model_copy(update={"default_partitions": 2, "pg_schema": pg_schema,
                                    "projector_batch_records": 50})
    await asyncio.to_thread(setup, s, pg_schema)
    conn = store.connect(s.pg_dsn, pg_schema)
    store.declare(conn, sa.declaration(*RETRIES))
    log = Log(s)
    first = list(executions(6, "ka"))
    log.interleaved(first)
    log.flush()
    histories: dict[str, list[ExecutionEvent]] = {
        x[0][0].execution_id: [e for d in x for e in d] for x in first}

    def expected(name: str, type_: str, source: str) -> dict[str, Any]:
        decl = sa.declaration(name, type_, source)
        return {eid: sa.evaluate(decl, sa.activation(h), eid).value
                for eid, h in histories.items()}

    def values(name: str) -> dict[str, Any]:
        column = sa.COLUMN[RETRIES[1] if name == "retries" else STATUS[1]]
        return dict(conn.execute(f"SELECT execution_id, {column} FROM "
                                 "search_attribute_values WHERE attribute = %s",
                                 (name,)).fetchall())

    async def equal(name: str, decl: tuple[str, str, str]) -> bool:
        return values(name) == expected(*decl)

    stop = asyncio.Event()
    tasks = [asyncio.create_task(audit_run(s, stop)),
             asyncio.create_task(evaluator_run(s, stop))]
    try:
        async with running(s, "readmodel"):
            await until("retries of the first executions", lambda: equal("retries", RETRIES))
            # declared while everything runs: backfilled by the evaluator
            store.declare(conn, sa.declaration(*STATUS))
            await until("final_status backfilled", lambda: equal("final_status", STATUS))
            # new executions: the live path
            more = list(executions(4, "kb"))
            log.interleaved(more)
            log.flush()
            histories.update({x[0][0].execution_id: [e for d in x for e in d] for x in more})
            await until("both attributes of the new executions",
                        lambda: equal("retries", RETRIES))
            await until("final_status of the new executions",
                        lambda: equal("final_status", STATUS))
        rows = {r.name: r for r in store.list_attributes(conn)}
        assert rows["retries"].state == "ready" and rows["final_status"].state == "ready"
        assert rows["retries"].errors == 0 and rows["final_status"].errors == 0
        assert set(values("final_status").values()) == {"succeeded"}
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        conn.close()
