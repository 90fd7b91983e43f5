from __future__ import annotations

import pytest

from tests.e2e.conftest import EXAMPLES, Engine

pytestmark = pytest.mark.e2e


async def test_bench_5node_runs_to_success(engine: Engine) -> None:
    await engine.apply(EXAMPLES / "bench-5node.yaml")
    events = await engine.run("bench-5node", {})
    types = [e["event_type"] for e in events]
    assert types[0] == "ExecutionStarted"
    assert types[-1] == "ExecutionSucceeded"
    assert types.count("NodeSucceeded") == 5
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
