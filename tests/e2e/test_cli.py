"""The commands a person uses, against a running engine: apply, trigger --wait, history."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from flowlog.cli import app
from flowlog.settings import Settings, get_settings
from tests.e2e.conftest import EXAMPLES, Engine

pytestmark = pytest.mark.e2e


@pytest.fixture
def cli_env(engine_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("FLOWLOG_TOPIC_PREFIX", engine_settings.topic_prefix)
    monkeypatch.setenv("FLOWLOG_DEFAULT_PARTITIONS", str(engine_settings.default_partitions))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def test_apply_trigger_wait_history(engine: Engine, cli_env: None) -> None:
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args))
        return result.exit_code, result.output

    code, out = await asyncio.to_thread(invoke, "workflows", "apply",
                                        str(EXAMPLES / "bench-5node.yaml"))
    assert code == 0 and "bench-5node: v1 defined, active" in out
    code, out = await asyncio.to_thread(invoke, "workflows", "apply",
                                        str(EXAMPLES / "bench-5node.yaml"))
    assert code == 0 and "v1 unchanged" in out
    code, out = await asyncio.to_thread(invoke, "trigger", "bench-5node", "--input", "{}",
                                        "--wait", "--timeout", "60")
    assert code == 0, out
    execution_id = out.splitlines()[0].strip()
    assert "ExecutionSucceeded" in out
    code, out = await asyncio.to_thread(invoke, "history", execution_id, "--json")
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["event_type"] == "ExecutionSucceeded"
    code, out = await asyncio.to_thread(invoke, "trigger", "nope", "--wait", "--timeout", "30")
    assert code == 1 and "unknown workflow" in out
