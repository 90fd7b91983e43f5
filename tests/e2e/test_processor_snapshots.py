"""The processor's snapshots and its window of finished executions, on the real broker.

A processor that snapshots often runs executions and stops; a new processor (another
process would do the same) starts from the snapshots plus the execution-events tail, not
the whole partitions, and goes on deciding. With a finished window of 2, each partition
keeps at most 2 finished executions in memory. Under both processing guarantees (at least
once, a snapshot is written once the records it covers are acknowledged).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from flowlog.streams.runtime.processor import Processor
from flowlog.streams.runtime.worker import Worker

from flowlog.settings import Settings
from tests.e2e.conftest import Engine

pytestmark = pytest.mark.e2e
DEFINITION = """
id: snap
nodes:
  a: {type: tool, tool: recorded, input: {n: "1"}}
  b: {type: tool, tool: recorded, needs: [a], input: {n: "2"}}
"""


async def _until(what: str, check: Any, within: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {within:.0f}s: {what}")
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
async def test_a_restart_reads_snapshots_plus_the_tail(engine_settings: Settings,
                                                       tmp_path: Path, guarantee: str) -> None:
    s = engine_settings.model_copy(update={"processor_snapshot_interval_s": 0.2,
                                           "finished_window": 2,
                                           "processing_guarantee": guarantee})
    definition = tmp_path / "snap.yaml"
    definition.write_text(DEFINITION)
    first = Worker(s, ["processor", "executor"])
    await first.start()
    engine = Engine(s, first)
    try:
        await engine.apply(definition)
        ids = await engine.trigger_many(["snap"] * 30)
        for execution_id in ids:
            events = await engine.wait(execution_id)
            assert events[-1]["event_type"] == "ExecutionSucceeded"
        proc: Processor = first.components["processor"]
        for part in proc.parts.values():  # the window bounds what stays in memory
            assert len(part.state.finished) <= 2
            assert all(not st.finished for eid, st in part.state.states.items()
                       if eid not in part.state.finished)
        assert sum(p.state.evicted for p in proc.parts.values()) >= 30 - 2 * len(proc.parts)
        # a step after the last executions finished writes the snapshot covering them
        await engine.trigger_many(["snap"])
        await _until("snapshots written", lambda: proc.stats["snapshots"] >= len(proc.parts))
        total_events = proc.stats["events"]
    finally:
        await first.stop()

    second = Worker(s, ["processor", "executor"])
    await second.start()
    engine = Engine(s, second)
    try:
        proc = second.components["processor"]
        await _until("partitions opened", lambda: len(proc.parts) == s.default_partitions)
        assert proc.stats["snapshot_loads"] == s.default_partitions
        assert proc.stats["rebuilt_events"] < total_events, proc.stats
        later = await engine.trigger_many(["snap"] * 3)
        for execution_id in later:
            events = await engine.wait(execution_id)
            assert events[-1]["event_type"] == "ExecutionSucceeded"
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    finally:
        await second.stop()
