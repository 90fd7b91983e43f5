"""The orchestrator's finished executions leave memory beyond a window per partition.

The orchestrator is built with fakes (no I/O): its rebuild reads encoded
`ExecutionEventBatch` records from an in-memory partition; the histories are decided by the
pure aggregate."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from flowlog.aggregates import records
from flowlog.aggregates.definition import compile_definition, parse_definition
from flowlog.aggregates.execution import ExecutionState, evolve
from flowlog.schemas.codec import Codec
from flowlog.schemas.guard import DecodeGuard
from flowlog.streams.runtime.histories import succeeding_history
from flowlog.streams.runtime.orchestrator import Orchestrator
from flowlog.streams.runtime.window import FinishedWindow

from flowlog.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.unit
DAG = yaml.safe_load((REPO_ROOT / "examples" / "bench-5node.yaml").read_text())
CODEC = Codec()


def history(finish: bool) -> tuple[str, list[bytes]]:
    """One execution of the 5-node DAG as encoded batches; unfinished: its last result is
    never reported."""
    d = compile_definition(parse_definition({**DAG, "version": 1}))
    h = succeeding_history(d, execution_id=str(uuid.uuid4()),
                           start=datetime(2026, 1, 1, tzinfo=UTC),
                           new_id=lambda: str(uuid.uuid4()), step=timedelta(milliseconds=1),
                           output={}, finish=finish)
    assert h.state.finished is finish
    return h.execution_id, [CODEC.encode("ExecutionEventBatch",
                                         records.batch_record(x.events, x.input_id))
                            for x in h.decisions]


class FakeProducer:
    async def send(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the rebuild sends nothing")

    async def flush(self) -> None:
        return None


def orchestrator(window: int, partition: list[bytes]) -> Orchestrator:
    async def read_events(topic: str, p: int) -> AsyncIterator[Any]:
        for offset, value in enumerate(partition):
            yield SimpleNamespace(offset=offset, value=value)

    settings = Settings(finished_window=window)
    definitions = SimpleNamespace(registry=SimpleNamespace(workflows={}))
    return Orchestrator(settings, definitions, FakeProducer(),  # type: ignore[arg-type]
                        consumer=SimpleNamespace(),  # type: ignore[arg-type]
                        guard=DecodeGuard(CODEC, None, validate=False),  # type: ignore[arg-type]
                        read_events=read_events)


async def test_a_rebuild_keeps_the_unfinished_and_the_last_window_of_finished() -> None:
    done = [history(finish=True) for _ in range(5)]
    running = history(finish=False)
    log = [b for _, batches in done[:3] for b in batches] + running[1] \
        + [b for _, batches in done[3:] for b in batches]
    o = orchestrator(2, log)
    states = await o._load(0)
    assert set(states) == {running[0], done[3][0], done[4][0]}
    assert not states[running[0]].finished
    assert states[done[4][0]].finished and states[done[4][0]].applied  # dedup kept
    assert list(o.finished[0]) == [done[3][0], done[4][0]]
    assert o.stats["evicted"] == 3


async def test_an_event_after_its_execution_left_memory_is_skipped_in_the_rebuild() -> None:
    a, b = history(finish=True), history(finish=True)
    # a late batch of `a` (its last one again, e.g. written twice) after `a` was evicted
    log = a[1] + b[1] + [a[1][-1]]
    o = orchestrator(1, log)
    states = await o._load(0)
    assert set(states) == {b[0]}
    assert o.stats["rebuild_skipped_events"] >= 1


async def test_live_retirement_evicts_the_oldest_finished() -> None:
    o = orchestrator(2, [])
    states: dict[str, ExecutionState] = {}
    o.finished[0] = FinishedWindow(o.window)
    ids = []
    for _ in range(4):
        eid, batches = history(finish=True)
        state = ExecutionState()
        for value in batches:
            for e in records.batch_events(CODEC.decode(value).record):
                evolve(state, e)
        o._retire(states, o.finished[0], eid, state)
        ids.append(eid)
    assert list(states) == ids[2:]
    assert all(s.nodes == {} for s in states.values())  # retired: no node runs kept
    assert o.stats["evicted"] == 2
