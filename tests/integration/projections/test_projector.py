"""The projectors on the real services: rows equal a fresh fold of the log; duplicates and
bad records change nothing but `projection_rejects`; live status reaches Redis; the
definitions become workflows and versions; a rebalance between two projectors applies
every record once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from flowlog.projections.live import LivePublisher, channel_all
from flowlog.projections.ops import verify
from flowlog.projections.runner import ProjectorRunner
from flowlog.projections.worker import make_projector
from flowlog.schemas.events import WorkflowActivated, WorkflowDefined, WorkflowUpdated
from flowlog.schemas.sdk import EventProducer
from prometheus_client import REGISTRY

from flowlog.observability.lag import LAG
from flowlog.settings import Settings
from tests.integration.projections.support import Log, executions, fetch, setup, wait_caught_up

pytestmark = pytest.mark.integration


@pytest.fixture
def proj_settings(settings: Settings, pg_schema: str, kafka_bootstrap: str,
                  redis_url: str) -> Settings:
    s = settings.model_copy(update={"default_partitions": 3, "pg_schema": pg_schema,
                                    "projector_batch_records": 200})
    setup(s, pg_schema)
    return s


@contextlib.asynccontextmanager
async def running(s: Settings, name: str, live: bool = False
                  ) -> AsyncIterator[ProjectorRunner]:
    runner = ProjectorRunner(s, make_projector(name, s), LivePublisher(s, enabled=live))
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield runner
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def _assert_verified(s: Settings, name: str) -> Any:
    report = await verify(s, name)
    assert report.ok, [d.render() for d in report.differences[:10]] + report.missing_rejects
    return report


async def test_rows_equal_the_fold_with_duplicates_and_bad_records(
        proj_settings: Settings) -> None:
    s = proj_settings
    log = Log(s)
    execs = list(executions(40, "x"))
    log.interleaved(execs)
    log.interleaved(execs[:10])  # re-written decisions at later offsets: duplicates
    log.raw("garbage", b"\x00\x01not avro")  # undecodable
    orphan = next(iter(executions(1, "orphan")))
    log.decision(orphan[2])  # a node result of an execution whose start is not in the log
    log.flush()
    async with running(s, "readmodel"), running(s, "analytics"):
        await wait_caught_up(s, s.pg_schema, "readmodel")
        await wait_caught_up(s, s.pg_schema, "analytics")
    report = await _assert_verified(s, "readmodel")
    await _assert_verified(s, "analytics")
    assert report.counts["workflow_executions"][0] == 40
    reasons = sorted(r[3] for r in report.rejects)
    assert len(reasons) == 2, reasons
    assert any("undecodable" in r for r in reasons)
    assert any("unknown execution orphan-0" in r for r in reasons)
    events = await fetch(s, s.pg_schema, "SELECT count(*) AS n FROM execution_events")
    assert events[0]["n"] == sum(len(d) for x in execs for d in x)
    # the additive columns would double if a duplicate were applied
    tokens = await fetch(s, s.pg_schema,
                         "SELECT sum(input_tokens) AS t, sum(retries) AS r FROM "
                         "workflow_executions")
    facts = await fetch(s, s.pg_schema,
                        "SELECT sum(input_tokens) AS t, sum(retries) AS r FROM execution_facts")
    assert tokens[0]["t"] > 0 and tokens[0]["r"] > 0
    assert (tokens[0]["t"], tokens[0]["r"]) == (facts[0]["t"], facts[0]["r"])


async def test_definitions_become_workflows_and_versions(proj_settings: Settings) -> None:
    s = proj_settings
    body = {"id": "wf-a", "name": "A", "nodes": {"t": {"type": "transform", "output": "1"}}}
    body2 = {**body, "name": "A2"}
    with EventProducer.from_settings(s) as producer:
        assert producer.publish_many([
            WorkflowDefined(workflow_id="wf-a", workflow_version=1, version=1, definition=body),
            WorkflowActivated(workflow_id="wf-a", workflow_version=1),
            WorkflowUpdated(workflow_id="wf-a", workflow_version=2, version=2, definition=body2),
            WorkflowDefined(workflow_id="wf-a", workflow_version=1, version=1, definition=body),
            WorkflowUpdated(workflow_id="wf-a", workflow_version=4, version=4, definition=body2),
        ]).ok
    async with running(s, "readmodel"):
        await wait_caught_up(s, s.pg_schema, "readmodel")
    wf = await fetch(s, s.pg_schema, "SELECT * FROM workflows")
    assert [(w["workflow_id"], w["status"], w["latest_version"], w["name"]) for w in wf] == \
        [("wf-a", "active", 2, "A2")]
    versions = await fetch(s, s.pg_schema,
                           "SELECT version FROM workflow_versions ORDER BY version")
    assert [v["version"] for v in versions] == [1, 2]
    report = await _assert_verified(s, "readmodel")
    assert [r[3] for r in report.rejects] == [
        "WorkflowUpdated of wf-a v4: follows v2 (versions 3..3 missing)"]


async def test_live_status_on_redis(proj_settings: Settings) -> None:
    s = proj_settings
    client = aioredis.Redis.from_url(s.redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel_all(s))
    await pubsub.get_message(timeout=5)  # the subscribe confirmation
    log = Log(s)
    execs = list(executions(2, "live"))
    log.interleaved(execs)
    log.flush()
    final: dict[str, dict[str, Any]] = {}
    async with running(s, "readmodel", live=True):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while len([m for m in final.values() if m["status"] in ("succeeded", "failed")]) < 2:
            assert loop.time() < deadline, final
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if msg is None:
                continue
            data = orjson.loads(msg["data"])
            old = final.get(data["execution_id"])
            assert old is None or data["id"] > old["id"]  # ids only grow (SSE Last-Event-ID)
            final[data["execution_id"]] = data
        # the lag gauges the worker's /metrics serves: records behind per partition
        # (the process's sampler), seconds behind per projection (set at each commit)
        await LAG.sample()
        topic = f"{s.topic_prefix}execution-events"
        behind = [REGISTRY.get_sample_value("flowlog_consumer_lag", {
            "group": "projector-readmodel", "topic": topic, "partition": str(p)})
            for p in range(3)]
        assert None not in behind, behind
    assert REGISTRY.get_sample_value("flowlog_projection_lag_seconds",
                                     {"projection": "readmodel"}) is not None
    rows = await fetch(s, s.pg_schema, "SELECT execution_id, status, last_seq "
                       "FROM workflow_executions")
    assert {r["execution_id"]: (r["status"], r["last_seq"]) for r in rows} == \
        {k: (m["status"], m["id"]) for k, m in final.items()}
    await pubsub.aclose()
    await client.aclose()


async def test_rebalance_between_two_projectors_applies_each_record_once(
        proj_settings: Settings) -> None:
    s = proj_settings.model_copy(update={"projector_batch_records": 50})
    log = Log(s)
    execs = list(executions(150, "rb"))
    thirds = [execs[:50], execs[50:100], execs[100:]]
    log.interleaved(thirds[0])
    log.flush()
    async with running(s, "readmodel") as first:
        await _until(lambda: first.stats["records"] > 100)
        async with running(s, "readmodel") as second:  # joins: partitions move
            await _until(lambda: bool(second.assigned) and not second.resync)
            log.interleaved(thirds[1])
            log.flush()
            await _until(lambda: second.stats["records"] > 0)
        log.interleaved(thirds[2])  # the second left: its partitions move back
        log.flush()
        await wait_caught_up(s, s.pg_schema, "readmodel")
        assert first.stats["records"] > 0 and second.stats["records"] > 0
    await _assert_verified(s, "readmodel")
    n = await fetch(s, s.pg_schema, "SELECT count(*) AS n FROM execution_events")
    assert n[0]["n"] == log.events


async def _until(check: Any, within: float = 90.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_replaying_over_existing_rows_changes_nothing(proj_settings: Settings) -> None:
    """Offsets reset to zero with the rows kept (and one execution row lost): the projector
    folds everything again; existing index rows make the straight COPY fail, the staged
    merge takes over, and the tables end equal to the fold."""
    s = proj_settings
    log = Log(s)
    log.interleaved(list(executions(20, "again")))
    log.flush()
    async with running(s, "readmodel"):
        await wait_caught_up(s, s.pg_schema, "readmodel")
    await fetch(s, s.pg_schema, "DELETE FROM workflow_executions WHERE execution_id = "
                "'again-3'")
    await fetch(s, s.pg_schema, "DELETE FROM node_runs WHERE execution_id = 'again-3'")
    await fetch(s, s.pg_schema, "UPDATE projection_offsets SET next_offset = 0 WHERE "
                "projector = 'readmodel'")
    async with running(s, "readmodel") as runner:
        await wait_caught_up(s, s.pg_schema, "readmodel")
        assert runner.stats["duplicates"] > 0
    await _assert_verified(s, "readmodel")
