"""An open circuit breaker delays executions; it does not fail them (issue 8, item 7).

A webhook target is down (503) for its first seconds, then answers 200. 60 executions call
it at once, with default retry and breaker settings (3 attempts, 1 s then 2 s apart; the
breaker opens after 5 consecutive failures for 30 s, its state shared through Redis).
Calls refused by the open breaker never reached the target: they are retried at its
half-open time and use up no attempt, so every execution succeeds, each with at most two
real failures. Before the change the refusals used up the remaining attempts within a
few seconds and the executions whose first calls failed ended `ExecutionFailed`.

The outage is one of time, not of a number of requests: once the breaker is open only its
half-open trials reach the target, one per cool-down, so an outage "of N requests" would
last N cool-downs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.conftest import Engine, events_of
from tests.support.fake_webhook import FakeWebhookServer

pytestmark = pytest.mark.e2e

EXECUTIONS = 60
OUTAGE_S = 5.0  # the target answers 503 this long (well inside the 30 s cool-down)


async def test_breaker_outage_ends_in_success_without_spending_attempts(
        engine: Engine, fake_webhook: FakeWebhookServer, tmp_path: Path) -> None:
    assert engine.settings.breaker_store == "auto"  # the default: Redis when it answers
    definition = tmp_path / "outage.yaml"
    definition.write_text(f"""
id: outage
nodes:
  call:
    type: webhook
    method: POST
    url: "{fake_webhook.url}/notify"
    body: '{{"execution": "{{{{ execution.id }}}}"}}'
""")
    await engine.apply(definition)
    fake_webhook.down_for(OUTAGE_S, 503)
    ids = await engine.trigger_many(["outage"] * EXECUTIONS)
    histories = await asyncio.gather(*(engine.wait(i, within=240.0) for i in ids))
    ends = [h[-1]["event_type"] for h in histories]
    assert ends == ["ExecutionSucceeded"] * EXECUTIONS, sorted(set(ends))
    refused = 0
    for events in histories:
        failures = events_of(events, "NodeFailed")
        real = [f for f in failures if f["error"]["type"] != "circuit_open"]
        deferred = [f for f in failures if f["error"]["type"] == "circuit_open"]
        assert len(real) <= 2, real  # at most two attempts spent on the outage
        for f in deferred:  # each refusal says when, and is retried then
            assert f["error"]["retry_at"] is not None
            (retry,) = [r for r in events_of(events, "NodeRetryScheduled")
                        if r["attempt"] == f["attempt"]]
            assert retry["due_at"] >= f["error"]["retry_at"]
        refused += len(deferred)
    assert refused > 0, "the breaker never opened: this test proved nothing"
    # refused calls never reach the target: at most one request per attempt spent (an
    # attempt that timed out before its request left counts as spent and sent nothing)
    spent = sum(
        len([f for f in events_of(h, "NodeFailed") if f["error"]["type"] != "circuit_open"])
        + 1 for h in histories)
    assert EXECUTIONS <= len(fake_webhook.requests) <= spent
