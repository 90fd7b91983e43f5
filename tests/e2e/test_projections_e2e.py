"""Every example workflow through the engine AND the projectors: each execution's row,
its node runs, its events index, and the analytics rollups, checked against the events the
engine wrote; then `verify` finds the tables equal to a fresh fold of the log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
from flowlog.projections.analytics import run_rollups
from flowlog.projections.migrate import migrate
from flowlog.projections.ops import verify
from flowlog.projections.runner import ProjectorRunner
from flowlog.projections.worker import make_projector
from flowlog.schemas.events import EventReceived, RetryNodeRequested

from flowlog.settings import Settings
from tests.e2e.conftest import EXAMPLES, Engine, patched
from tests.e2e.test_examples import TICKET, _triage_local, _triage_script
from tests.integration.projections.support import wait_caught_up
from tests.support.fake_llm import FakeLLMServer
from tests.support.fake_webhook import FakeWebhookServer

pytestmark = pytest.mark.e2e
_STATUS = {"ExecutionSucceeded": "succeeded", "ExecutionFailed": "failed",
           "ExecutionCancelled": "cancelled", "ExecutionRejected": "rejected"}
_RUN_END = {"NodeSucceeded": "succeeded", "NodeFailed": "failed",
            "NodeDeadLettered": "dead_lettered"}


@pytest.fixture
async def projected(engine: Engine, pg_schema: str) -> AsyncIterator[Settings]:
    s = engine.settings.model_copy(update={"pg_schema": pg_schema})
    await asyncio.to_thread(migrate, s, pg_schema)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(ProjectorRunner(s, make_projector(n, s)).run(stop))
             for n in ("readmodel", "analytics")]
    try:
        yield s
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def _run_examples(engine: Engine, tmp_path: Path, llm: FakeLLMServer,
                        webhook: FakeWebhookServer) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    await engine.apply(EXAMPLES / "batch-loop.yaml")
    runs["batch-loop"] = await engine.run("batch-loop", {"records": ["a", "b", "c"]})
    await engine.apply(EXAMPLES / "fan-out-fan-in.yaml")
    runs["fan-out-fan-in"] = await engine.run("fan-out-fan-in", {"symbol": "ACME"})

    def shorten(doc: dict[str, Any]) -> None:
        doc["nodes"]["cool_off"]["duration"] = "1s"

    await engine.apply(patched("delay-and-wait.yaml", tmp_path, shorten))
    x = await engine.trigger("delay-and-wait", {"quote_id": "q-7"})
    await engine.until(x, "TimerFired", kind="delay")
    await engine.command(EventReceived, x, "delay-and-wait", event_name="quote.answered",
                         payload={"quote_id": "q-7", "accepted": True})
    runs["delay-and-wait"] = await engine.wait(x)

    def local(doc: dict[str, Any]) -> None:
        doc["nodes"]["notify"]["url"] = f"{webhook.url}/orders"
        doc["nodes"]["notify"]["retry"] = {"max_attempts": 3, "initial_delay": "200ms",
                                           "multiplier": 2}

    await engine.apply(patched("webhook-retry-deadletter.yaml", tmp_path, local))
    webhook.fail(3, status=503)
    x = await engine.trigger("webhook-retry-deadletter", {"order_id": "o-1"})
    await engine.until(x, "IncidentRaised", node_id="notify")
    await engine.command(RetryNodeRequested, x, "webhook-retry-deadletter", node_id="notify",
                         reason="partner is back")
    runs["webhook-retry-deadletter"] = await engine.wait(x)
    await engine.apply(patched("support-triage.yaml", tmp_path, _triage_local(webhook.url)))
    _triage_script(llm)
    runs["support-triage"] = await engine.run("support-triage", {"ticket": TICKET})
    await engine.apply(EXAMPLES / "subworkflow-caller.yaml")
    _triage_script(llm)
    runs["subworkflow-caller"] = await engine.run("subworkflow-caller", {"ticket": TICKET})
    return runs


async def test_examples_become_rows(engine: Engine, projected: Settings, tmp_path: Path,
                                    fake_llm: FakeLLMServer,
                                    fake_webhook: FakeWebhookServer) -> None:
    s = projected
    runs = await _run_examples(engine, tmp_path, fake_llm, fake_webhook)
    await wait_caught_up(s, s.pg_schema, "readmodel", within=60)
    await wait_caught_up(s, s.pg_schema, "analytics", within=60)
    conn = await asyncpg.connect(s.pg_dsn, server_settings={"search_path": s.pg_schema})
    try:
        for workflow, events in runs.items():
            x = events[0]["execution_id"]
            row = await conn.fetchrow("SELECT * FROM workflow_executions WHERE "
                                      "execution_id = $1", x)
            assert row is not None, workflow
            assert row["workflow_id"] == workflow
            assert row["status"] == _STATUS[events[-1]["event_type"]], workflow
            assert row["last_seq"] == len(events) and row["finished_at"] is not None
            index = await conn.fetch("SELECT seq, event_type FROM execution_events WHERE "
                                     "execution_id = $1 ORDER BY seq", x)
            assert [(r["seq"], r["event_type"]) for r in index] == \
                [(e["seq"], e["event_type"]) for e in events], workflow
            runs_ = {(r["node_id"], r["attempt"]): r for r in await conn.fetch(
                "SELECT * FROM node_runs WHERE execution_id = $1", x)}
            for e in events:
                if e["event_type"] == "NodeScheduled":
                    run = runs_[(e["node_id"], e["attempt"])]
                    assert run["node_type"] == e["node_type"] and run["scheduled_at"]
                if e["event_type"] in _RUN_END:
                    run = runs_[(e["node_id"], e["attempt"])]
                    if e["event_type"] != "NodeFailed" or run["status"] == "failed":
                        assert run["finished_at"] is not None, (workflow, e)
            model = [e for e in events if e["event_type"] == "AgentModelCalled"]
            assert row["model_calls"] == len(model)
            assert row["input_tokens"] == sum(e["input_tokens"] for e in model)
            trigger = await conn.fetchrow("SELECT outcome FROM triggers WHERE "
                                          "execution_id = $1", x)
            assert trigger is not None and trigger["outcome"] == "started"
        retried = await conn.fetchval(
            "SELECT retries FROM workflow_executions WHERE workflow_id = "
            "'webhook-retry-deadletter'")
        assert retried == 2
        wf = await conn.fetch("SELECT workflow_id, status FROM workflows")
        assert {r["workflow_id"] for r in wf} >= set(runs)
    finally:
        await conn.close()
    async with await psycopg.AsyncConnection.connect(
            s.pg_dsn, options=f"-c search_path={s.pg_schema}") as pconn:
        await run_rollups(pconn)
        cur = await pconn.execute(
            "SELECT workflow_id, status, sum(executions) FROM rollup_executions_1m "
            "GROUP BY 1, 2")
        rollup = {(w, st): n for w, st, n in await cur.fetchall()}
        cur = await pconn.execute("SELECT sum(calls), sum(input_tokens) FROM rollup_llm_1m")
        calls, tokens = await cur.fetchone() or (0, 0)
        cur = await pconn.execute(
            "SELECT sum(runs) FROM rollup_nodes_1m WHERE node_type = 'agent'")
        agent_runs = (await cur.fetchone() or (0,))[0]
    executions_by = {}
    for events in runs.values():
        key = (events[0]["workflow_id"], _STATUS[events[-1]["event_type"]])
        executions_by[key] = executions_by.get(key, 0) + 1
    for key, n in executions_by.items():
        assert rollup.get(key, 0) >= n, (key, rollup)  # sub-workflow children count too
    model = [e for events in runs.values() for e in events
             if e["event_type"] == "AgentModelCalled"]
    assert calls >= len(model) > 0 and tokens >= sum(e["input_tokens"] for e in model)
    assert agent_runs >= 2
    for name in ("readmodel", "analytics"):
        report = await verify(s, name)
        assert report.ok, [d.render() for d in report.differences[:10]]
        assert not report.rejects, report.rejects
