"""Dead-letter faults (issue 13): RabbitMQ stopped while 50 tasks dead-letter; the bridge
killed with SIGKILL between sending a batch's retry commands and acknowledging them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from flowlog.infra.services.rabbitmq import RabbitMQ
from flowlog.schemas.codec import Codec
from flowlog.streams.deadletters import ops
from flowlog.streams.runtime.kafka import catalog, read_partition

from flowlog.settings import Settings
from tests.e2e.conftest import Engine, engine, engine_settings, events_of, make_engine  # noqa: F401
from tests.integration.deadletters.conftest import (  # noqa: F401
    deadletters,
    dl_settings,
    flaky_workflow,
    until,
)
from tests.support.fixtures import fake_llm, fake_llm_server  # noqa: F401

REPO = Path(__file__).resolve().parents[2]


async def _held(s: Settings, n: int) -> list[ops.Held] | None:
    held = await ops.list_letters(s, ops.Filter())
    return held if sum(1 + len(h.copies) for h in held) >= n else None


async def test_rabbitmq_down_while_50_tasks_dead_letter_then_all_parked_exactly_once(
        engine: Engine, deadletters: Any, tmp_path: Path,  # noqa: F811
        base_settings: Settings) -> None:
    await engine.apply(flaky_workflow(tmp_path, "dl-outage", succeed_on=99))
    dl = await deadletters(deadletter_ladders={"dl-outage": []})  # park at once
    rabbit = RabbitMQ(base_settings)
    rabbit._ctl("stop_app")  # the node stays, AMQP is gone
    try:
        assert not rabbit.healthy()
        ids = await engine.trigger_many(["dl-outage"] * 50)
        for x in ids:  # every task dead-lettered on the Kafka side meanwhile
            await engine.until(x, "IncidentRaised", within=120)
        await until(lambda: _publisher_failed(dl), 60, "the publisher tried and failed")
    finally:
        rabbit._ctl("start_app")
        await until(lambda: rabbit.healthy(), 120, "RabbitMQ back")
    held = await until(lambda: _held(dl.settings, 50), 120, "50 dead letters parked")
    assert sorted(h.letter.execution_id for h in held if h.letter) == sorted(ids)
    assert all(not h.copies for h in held), "a dead letter was parked twice"
    assert len(held) == 50


def _publisher_failed(dl: Any) -> bool:
    from flowlog.streams.deadletters.bridge import LIVE
    from flowlog.streams.deadletters.topology import prefix

    live = LIVE.get(prefix(dl.settings))
    return live is not None and live[0].sink.attempts > 0


def _bridge_process(s: Settings, crash: float) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FLOWLOG_TOPIC_PREFIX": s.topic_prefix,
           "FLOWLOG_DEFAULT_PARTITIONS": str(s.default_partitions),
           "FLOWLOG_DEADLETTER_LADDER": "[1.0]", "FLOWLOG_DEADLETTER_BATCH": "10",
           "FLOWLOG_DEADLETTER_FAULT_CRASH_AFTER_SEND": str(crash),
           "FLOWLOG_METRICS_ENABLED": "false", "FLOWLOG_LOG_JSON": "false"}
    return subprocess.Popen([sys.executable, "-m", "flowlog.cli", "worker", "deadletters"],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


async def _retry_commands(s: Settings) -> list[str]:
    """Event ids of every RetryNodeRequested record on the commands topic."""
    cat = catalog(s)
    topic = cat.name("commands")
    codec = Codec.from_settings(s)
    out = []
    for p in range(cat.topics["commands"].partitions):
        async for msg in read_partition(s, topic, p):
            d = codec.decode(msg.value)
            if d.name == "RetryNodeRequested":
                out.append(d.record["event_id"])
    return out


async def test_bridge_killed_mid_batch_issues_no_retry_twice(
        engine: Engine, dl_settings: Settings, tmp_path: Path) -> None:  # noqa: F811
    await engine.apply(flaky_workflow(tmp_path, "dl-kill", succeed_on=2))
    ids = await engine.trigger_many(["dl-kill"] * 30)
    for x in ids:
        await engine.until(x, "IncidentRaised", within=120)
    s = engine.settings
    first = _bridge_process(s, crash=1.0)  # dies after its first batch's commands
    try:
        code = await until(lambda: first.poll(), 120, "the bridge killed itself mid-batch")
        assert code == -signal.SIGKILL
        sent = await _retry_commands(s)
        assert 1 <= len(sent) <= 10  # one batch sent, none acknowledged
        second = _bridge_process(s, crash=0.0)
        try:
            for x in ids:
                events = await engine.wait(x, within=120)
                assert events[-1]["event_type"] == "ExecutionSucceeded"
                assert len(events_of(events, "NodeScheduled", attempt=2)) == 1
                assert len(events_of(events, "IncidentResolved")) == 1
        finally:
            second.send_signal(signal.SIGTERM)
            await asyncio.to_thread(second.wait, 30)
    finally:
        if first.poll() is None:
            first.kill()
    sent = await _retry_commands(s)
    per_id = Counter(sent)
    assert len(per_id) == 30  # one command id per dead letter
    # the killed batch was redelivered and sent again under the same ids: the orchestrator
    # applied each once (one attempt 2 per execution, above)
    assert any(n > 1 for n in per_id.values())


@pytest.fixture(autouse=True)
def _rabbit_left_running(base_settings: Settings) -> Any:
    yield
    rabbit = RabbitMQ(base_settings)
    if not rabbit.healthy():
        rabbit._ctl("start_app", check=False)
