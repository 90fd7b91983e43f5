"""Flow control: at most N executions of a workflow (or a tenant) run at once; the rest
wait in order and start as slots free."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Engine, events_of

pytestmark = pytest.mark.e2e

LIMITED = """
id: {id}
concurrency: {{max_executions: {limit}}}
nodes:
  work: {{type: tool, tool: sleep, input: {{seconds: "1"}}, timeout: 30s}}
"""


def _max_overlap(histories: list[list[dict[str, Any]]]) -> int:
    points: list[tuple[datetime, int]] = []
    for events in histories:
        start = events_of(events, "ExecutionStarted")[0]["occurred_at"]
        points += [(start, 1), (events[-1]["occurred_at"], -1)]
    running = peak = 0
    for _, step in sorted(points, key=lambda p: (p[0], p[1])):  # ends before starts
        running += step
        peak = max(peak, running)
    return peak


async def _run_all(engine: Engine, workflows: list[str], n: int) -> list[list[dict[str, Any]]]:
    ids = await engine.trigger_many([workflows[i % len(workflows)] for i in range(n)])
    return list(await asyncio.gather(*[engine.wait(i, within=90) for i in ids]))


async def test_workflow_limit_queues_in_order(make_engine: Any, tmp_path: Path,
                                              redis_url: str) -> None:
    engine: Engine = await make_engine(default_partitions=1)
    try:
        path = tmp_path / "limited.yaml"
        path.write_text(LIMITED.format(id="limited", limit=2))
        await engine.apply(path)
        histories = await _run_all(engine, ["limited"], 6)
    finally:
        await engine.worker.stop()
    assert all(h[-1]["event_type"] == "ExecutionSucceeded" for h in histories)
    assert all(h[0]["event_type"] == "ExecutionQueued" for h in histories)
    assert _max_overlap(histories) == 2
    starts = [events_of(h, "ExecutionStarted")[0]["occurred_at"] for h in histories]
    assert starts == sorted(starts), "executions did not start in the order they queued"


async def test_tenant_limit_across_workflows(make_engine: Any, tmp_path: Path,
                                             redis_url: str) -> None:
    engine: Engine = await make_engine(tenant_max_executions=1)
    try:
        for wid in ("first", "second"):
            path = tmp_path / f"{wid}.yaml"
            path.write_text(LIMITED.format(id=wid, limit=5))
            await engine.apply(path)
        histories = await _run_all(engine, ["first", "second"], 4)
    finally:
        await engine.worker.stop()
    assert all(h[-1]["event_type"] == "ExecutionSucceeded" for h in histories)
    assert _max_overlap(histories) == 1


GATED = """
id: {id}
concurrency: {{max_executions: 1}}
nodes:
  work: {{type: tool, tool: gate, input: {{open_when: "'{gate}'"}}, timeout: 60s}}
"""


async def test_cancel_a_queued_execution_frees_nothing_and_starts_nothing(
        make_engine: Any, tmp_path: Path, redis_url: str) -> None:
    from flowlog.schemas.events import CancelRequested

    gate = tmp_path / "open"  # the first execution holds its slot until this file exists
    engine: Engine = await make_engine()
    try:
        path = tmp_path / "one.yaml"
        path.write_text(GATED.format(id="one", gate=gate))
        await engine.apply(path)
        first = await engine.trigger("one", {})
        await engine.until(first, "ExecutionStarted")
        second = await engine.trigger("one", {})
        third = await engine.trigger("one", {})
        await engine.until(second, "ExecutionQueued")
        await engine.until(third, "ExecutionQueued")
        await engine.command(CancelRequested, second, "one", reason="not needed")
        cancelled = await engine.wait(second)
        await asyncio.sleep(0.5)  # time for a wrongly freed slot to start the third
        third_before = await engine.until(third, "ExecutionQueued")
        gate.touch()
        done = await engine.wait(third, within=60)
        assert (await engine.wait(first))[-1]["event_type"] == "ExecutionSucceeded"
    finally:
        gate.touch()
        await engine.worker.stop()
    assert [e["event_type"] for e in cancelled] == ["ExecutionQueued", "ExecutionCancelled"]
    assert [e["event_type"] for e in third_before] == ["ExecutionQueued"]
    assert done[-1]["event_type"] == "ExecutionSucceeded"
