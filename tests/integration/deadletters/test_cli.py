"""`flowlog dlq` from the shell's side: list, show, a dry run, retry and discard by filter,
with who and why in the commands."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from flowlog.schemas.codec import Codec
from flowlog.streams.runtime.kafka import catalog, read_partition
from typer.testing import CliRunner

from flowlog.cli import app
from flowlog.settings import Settings, get_settings
from tests.e2e.conftest import Engine, events_of
from tests.integration.deadletters.conftest import flaky_workflow, until


@pytest.fixture
def cli_env(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Any:
    s = engine.settings
    monkeypatch.setenv("FLOWLOG_TOPIC_PREFIX", s.topic_prefix)
    monkeypatch.setenv("FLOWLOG_DEFAULT_PARTITIONS", str(s.default_partitions))
    monkeypatch.setenv("FLOWLOG_DEADLETTER_LADDERS", '{"dl-cli": []}')
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, ["dlq", *args], catch_exceptions=False)


async def _commands(s: Settings) -> list[dict[str, Any]]:
    cat = catalog(s)
    codec = Codec.from_settings(s)
    out = []
    for p in range(cat.topics["commands"].partitions):
        async for msg in read_partition(s, cat.name("commands"), p):
            d = codec.decode(msg.value)
            headers = {k: v.decode() for k, v in (msg.headers or ())}
            out.append({"name": d.name, "headers": headers, **d.record})
    return out


async def test_dlq_cli_lists_shows_previews_retries_and_discards(
        engine: Engine, deadletters: Any, cli_env: None, tmp_path: Path) -> None:
    await engine.apply(flaky_workflow(tmp_path, "dl-cli", succeed_on=2))
    await deadletters(deadletter_ladders={"dl-cli": []})
    a, b = await engine.trigger("dl-cli", {}), await engine.trigger("dl-cli", {})

    def listed() -> list[dict[str, Any]] | None:
        r = _cli("list", "--json", "-w", "dl-cli")
        rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        return rows if len(rows) == 2 else None

    rows = await until(lambda: asyncio.to_thread(listed), 60, "2 parked dead letters")
    by_exec = {r["execution_id"]: r for r in rows}
    assert set(by_exec) == {a, b} and rows[0]["node_type"] == "tool"

    shown = json.loads((await asyncio.to_thread(_cli, "show", by_exec[a]["message_id"])).stdout)
    assert shown["dead_letter"]["input"] == {"succeed_on": 2}
    assert shown["dead_letter"]["config"]["tool"] == "flaky"

    r = await asyncio.to_thread(_cli, "retry", "-w", "dl-cli", "--reason", "fixed",
                                "--dry-run")
    assert r.exit_code == 0 and "dry run: 2 dead letter(s) would be retried" in r.stdout
    r = await asyncio.to_thread(_cli, "retry", "--reason", "fixed")
    assert r.exit_code == 2  # no id and no filter: refused

    r = await asyncio.to_thread(_cli, "retry", by_exec[a]["message_id"], "--reason",
                                "partner fixed", "--by", "alice")
    assert r.exit_code == 0, r.stdout
    assert "retry: 1 of 1 done by alice" in r.stdout
    def discarded() -> bool:
        r = _cli("discard", "-w", "dl-cli", "--reason", "duplicate", "--by", "bob")
        assert r.exit_code == 0, r.stdout
        return "discard: 1 of 1 done by bob" in r.stdout

    # a filter sees only the messages on the queues at that moment: one held for a moment
    # by a concurrent browse (the oldest-age gauge, `dlq list`) is missed, so try again
    # until it is seen (known limit, docs/deadletters.md); a miss publishes nothing
    await until(lambda: asyncio.to_thread(discarded), 30, "b's dead letter discarded")
    done_a = await engine.wait(a, within=60)
    done_b = await engine.wait(b, within=60)
    assert done_a[-1]["event_type"] == "ExecutionSucceeded"
    assert len(events_of(done_a, "IncidentResolved", resolution="retried")) == 1
    assert done_b[-1]["event_type"] == "ExecutionCancelled"
    cmds = await _commands(engine.settings)
    retry = [c for c in cmds if c["name"] == "RetryNodeRequested"]
    cancel = [c for c in cmds if c["name"] == "CancelRequested"]
    assert [(c["requested_by"], c["reason"], c["execution_id"]) for c in retry] == \
        [("alice", "partner fixed", a)]
    assert [(c["requested_by"], c["execution_id"]) for c in cancel] == [("bob", b)]
    assert "duplicate" in cancel[0]["reason"]
    # the audit trail's headers, as the command gateway writes them
    assert retry[0]["headers"] == {"flowlog-actor": "user:alice",
                                   "flowlog-reason": "partner fixed"}
    assert cancel[0]["headers"]["flowlog-actor"] == "user:bob"
