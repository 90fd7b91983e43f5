"""Retries, node timeout, cancel, bad input and rejected triggers on a running engine."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from flowlog.schemas.codec import Codec
from flowlog.schemas.events import CancelRequested, WorkflowPaused
from flowlog.schemas.sdk import EventProducer
from flowlog.streams.runtime.kafka import catalog

from tests.e2e.conftest import Engine, events_of

pytestmark = pytest.mark.e2e


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


async def test_retries_until_success(engine: Engine, tmp_path: Path) -> None:
    await engine.apply(_write(tmp_path, "retrying", """
id: retrying
nodes:
  work:
    type: tool
    tool: flaky
    input: {succeed_on: "3"}
    retry: {max_attempts: 3, initial_delay: 100ms, multiplier: 2}
"""))
    events = await engine.run("retrying", {})
    assert events[-1]["event_type"] == "ExecutionSucceeded", events[-1]
    assert [e["next_attempt"] for e in events_of(events, "NodeRetryScheduled")] == [2, 3]
    assert len(events_of(events, "TimerFired", kind="retry")) == 2
    assert [e["attempt"] for e in events_of(events, "NodeFailed")] == [1, 2]


async def test_retries_exhausted_fail_the_execution(engine: Engine, tmp_path: Path) -> None:
    await engine.apply(_write(tmp_path, "giving-up", """
id: giving-up
nodes:
  work:
    type: tool
    tool: flaky
    input: {succeed_on: "9"}
    retry: {max_attempts: 2, initial_delay: 100ms}
"""))
    events = await engine.run("giving-up", {})
    assert events[-1]["event_type"] == "ExecutionFailed", events[-1]
    assert events[-1]["node_id"] == "work"


async def test_node_timeout(engine: Engine, tmp_path: Path) -> None:
    await engine.apply(_write(tmp_path, "too-slow", """
id: too-slow
nodes:
  work:
    type: tool
    tool: sleep
    input: {seconds: "5"}
    timeout: 500ms
    retry: {max_attempts: 1}
"""))
    events = await engine.run("too-slow", {}, within=30)
    assert events[-1]["event_type"] == "ExecutionFailed", events[-1]
    failed = events_of(events, "NodeFailed", node_id="work")
    assert len(failed) == 1
    # whichever came first: the orchestrator's node_timeout timer or the executor's timeout
    assert "time" in (failed[0]["error"]["type"] + failed[0]["error"]["message"]).lower()


async def test_cancel(engine: Engine, tmp_path: Path) -> None:
    await engine.apply(_write(tmp_path, "long", """
id: long
nodes:
  work: {type: tool, tool: sleep, input: {seconds: "30"}, timeout: 60s}
  after: {type: tool, tool: noop, needs: [work]}
"""))
    execution_id = await engine.trigger("long", {})
    await engine.until(execution_id, "NodeScheduled", node_id="work")
    await engine.command(CancelRequested, execution_id, "long", reason="changed my mind")
    events = await engine.wait(execution_id, within=20)
    assert events[-1]["event_type"] == "ExecutionCancelled"
    assert events[-1]["reason"] == "changed my mind"
    assert not events_of(events, "NodeScheduled", node_id="after")


async def test_unknown_and_paused_workflows_are_rejected(engine: Engine, tmp_path: Path
                                                        ) -> None:
    events = await engine.run("no-such-workflow", {})
    assert [e["event_type"] for e in events] == ["ExecutionRejected"]
    assert events[0]["reason"] == "unknown workflow"

    await engine.apply(_write(tmp_path, "pausable", "id: pausable\nnodes:\n"
                              "  a: {type: tool, tool: noop}\n"))
    with EventProducer.from_settings(engine.settings) as producer:
        producer.publish_sync(WorkflowPaused(workflow_id="pausable", workflow_version=1,
                                             reason="maintenance"))
    # the worker's registry follows the definitions topic: wait until it has seen the pause
    registry = engine.worker.follower.registry
    for _ in range(300):
        if not registry.accepting("pausable"):
            break
        await asyncio.sleep(0.1)
    assert not registry.accepting("pausable"), "the worker never saw the pause"
    events = await engine.run("pausable", {})
    assert [e["event_type"] for e in events] == ["ExecutionRejected"]
    assert events[0]["reason"] == "paused workflow"


async def test_invalid_input_is_rejected(engine: Engine, tmp_path: Path) -> None:
    await engine.apply(_write(tmp_path, "typed", """
id: typed
inputs: {n: {type: integer, required: true}}
nodes:
  a: {type: tool, tool: noop}
"""))
    events = await engine.run("typed", {"n": "seven"})
    assert events[-1]["event_type"] == "ExecutionRejected"
    assert events[-1]["reason"].startswith("invalid input")


async def _quarantined(engine: Engine, count: int, within: float = 20.0
                       ) -> list[dict[str, Any]]:
    codec = Codec.from_settings(engine.settings)
    consumer = AIOKafkaConsumer(catalog(engine.settings).name("quarantine"),
                                bootstrap_servers=engine.settings.bootstrap_servers,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(found) < count and loop.time() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                found += [codec.decode(m.value).record for m in msgs]
    finally:
        await consumer.stop()
    return found


async def test_malformed_inputs_go_to_quarantine_and_never_stop_a_partition(
        engine: Engine, tmp_path: Path) -> None:
    await engine.apply(_write(tmp_path, "after-bad", "id: after-bad\nnodes:\n"
                              "  a: {type: tool, tool: noop}\n"))
    cat = catalog(engine.settings)
    producer = AIOKafkaProducer(bootstrap_servers=engine.settings.bootstrap_servers)
    await producer.start()
    try:
        for p in range(engine.settings.default_partitions):  # every partition gets garbage
            await producer.send_and_wait(cat.name("triggers"), b"not avro", key=b"x",
                                         partition=p)
            await producer.send_and_wait(cat.name("node-results"), b"\xc3\x01truncated",
                                         key=b"y", partition=p)
    finally:
        await producer.stop()
    # executions on every partition still run to their end
    ids = [await engine.trigger("after-bad", {}) for _ in range(6)]
    for execution_id in ids:
        events = await engine.wait(execution_id)
        assert events[-1]["event_type"] == "ExecutionSucceeded"
    n = 2 * engine.settings.default_partitions
    found = await _quarantined(engine, n)
    assert len(found) == n
    assert {r["source_topic"] for r in found} == {cat.name("triggers"), cat.name("node-results")}
    assert all(r["reason"] for r in found)
