"""Every example workflow, run by a real worker (all roles) on the real broker, to its
expected terminal event. Durations are shortened and URLs point at local fake servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from flowlog.schemas.events import EventReceived, RetryNodeRequested

from tests.e2e.conftest import EXAMPLES, Engine, events_of, patched
from tests.support.fake_llm import FakeLLMServer, Turn
from tests.support.fake_webhook import FakeWebhookServer

pytestmark = pytest.mark.e2e


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str) else value


def _seq_ok(events: list[dict[str, Any]]) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    terminal = [e for e in events if e["event_type"] in
                ("ExecutionSucceeded", "ExecutionFailed", "ExecutionCancelled",
                 "ExecutionRejected")]
    assert len(terminal) == 1


async def test_batch_loop(engine: Engine) -> None:
    await engine.apply(EXAMPLES / "batch-loop.yaml")
    events = await engine.run("batch-loop", {"records": ["a", "b", "c"]})
    _seq_ok(events)
    end = events[-1]
    assert end["event_type"] == "ExecutionSucceeded", end
    out = _json(end["output"])
    assert [r["record"] for r in out["enriched"]] == ["a", "b", "c"]
    assert out["total"][-1] >= 10  # a while loop's output: every iteration's value
    assert len(events_of(events, "NodeScheduled", node_type="tool")) == 3


async def test_fan_out_fan_in(engine: Engine) -> None:
    await engine.apply(EXAMPLES / "fan-out-fan-in.yaml")
    events = await engine.run("fan-out-fan-in", {"symbol": "ACME"})
    _seq_ok(events)
    assert events[-1]["event_type"] == "ExecutionSucceeded", events[-1]
    assert events_of(events, "NodeFailed", node_id="provider_c")
    out = _json(events[-1]["output"])
    assert out["best"] == 10.5  # the lowest price, whatever the map order


async def test_delay_and_wait(engine: Engine, tmp_path: Path) -> None:
    def shorten(doc: dict[str, Any]) -> None:
        doc["nodes"]["cool_off"]["duration"] = "1s"

    await engine.apply(patched("delay-and-wait.yaml", tmp_path, shorten))
    execution_id = await engine.trigger("delay-and-wait", {"quote_id": "q-7"})
    await engine.until(execution_id, "TimerFired", kind="delay")
    await engine.command(EventReceived, execution_id, "delay-and-wait",
                         event_name="quote.answered", payload={"quote_id": "q-7",
                                                               "accepted": True})
    events = await engine.wait(execution_id)
    _seq_ok(events)
    assert events[-1]["event_type"] == "ExecutionSucceeded", events[-1]
    assert _json(events[-1]["output"]) == {"decision": "approved"}
    assert events_of(events, "NodeSucceeded", node_id="approved")


async def test_webhook_retry_dead_letter_then_retry(
        engine: Engine, tmp_path: Path, fake_webhook: FakeWebhookServer) -> None:
    def local(doc: dict[str, Any]) -> None:
        node = doc["nodes"]["notify"]
        node["url"] = f"{fake_webhook.url}/orders"
        node["retry"] = {"max_attempts": 3, "initial_delay": "200ms", "multiplier": 2}

    await engine.apply(patched("webhook-retry-deadletter.yaml", tmp_path, local))
    fake_webhook.fail(3, status=503)
    execution_id = await engine.trigger("webhook-retry-deadletter", {"order_id": "o-1"})
    await engine.until(execution_id, "IncidentRaised", node_id="notify")
    await engine.command(RetryNodeRequested, execution_id, "webhook-retry-deadletter",
                         node_id="notify", reason="partner is back")
    events = await engine.wait(execution_id)
    _seq_ok(events)
    assert events[-1]["event_type"] == "ExecutionSucceeded", events[-1]
    assert len(events_of(events, "NodeRetryScheduled", node_id="notify")) == 2
    assert events_of(events, "IncidentResolved", resolution="retried")
    posts = [r for r in fake_webhook.requests if r.path == "/orders"]
    assert len(posts) == 4
    keys = [r.headers.get("idempotency-key") for r in posts]
    assert keys == [f"{execution_id}:notify:{n}" for n in (1, 2, 3, 4)]
    assert all(r.headers.get("x-api-key") == "partner_key-value" for r in posts)


def _triage_script(llm: FakeLLMServer) -> None:
    llm.script(
        Turn.tools(("lookup_customer", {"email": "a@b.c"})),
        Turn.final('{"category": "billing", "customer_id": "c-42"}'),
        Turn.final("We will refund you."),
    )


def _triage_local(url: str) -> Any:
    def change(doc: dict[str, Any]) -> None:
        doc["nodes"]["post_reply"]["url"] = url + "/api/tickets/{{ input.ticket_id }}/replies"

    return change


TICKET = {"id": "t-1", "subject": "Refund please", "body": "I was charged twice."}


async def test_support_triage(engine: Engine, tmp_path: Path, fake_llm: FakeLLMServer,
                              fake_webhook: FakeWebhookServer) -> None:
    await engine.apply(patched("support-triage.yaml", tmp_path, _triage_local(fake_webhook.url)))
    _triage_script(fake_llm)
    events = await engine.run("support-triage", {"ticket": TICKET})
    _seq_ok(events)
    assert events[-1]["event_type"] == "ExecutionSucceeded", events[-1]
    out = _json(events[-1]["output"])
    assert out == {"category": "billing", "reply": "We will refund you."}
    assert len(events_of(events, "AgentModelCalled")) == 3
    assert events_of(events, "NodeSucceeded", node_id="refund_check")
    assert events_of(events, "NodeSkipped", node_id="file_issue")
    replies = [r for r in fake_webhook.requests if r.path == "/api/tickets/t-1/replies"]
    assert len(replies) == 1
    assert replies[0].headers["authorization"] == "Bearer helpdesk_token-value"


async def test_subworkflow_caller(engine: Engine, tmp_path: Path, fake_llm: FakeLLMServer,
                                  fake_webhook: FakeWebhookServer) -> None:
    await engine.apply(patched("support-triage.yaml", tmp_path, _triage_local(fake_webhook.url)))
    await engine.apply(EXAMPLES / "subworkflow-caller.yaml")
    _triage_script(fake_llm)
    events = await engine.run("subworkflow-caller", {"ticket": TICKET})
    _seq_ok(events)
    assert events[-1]["event_type"] == "ExecutionSucceeded", events[-1]
    assert _json(events[-1]["output"]) == {"category": "billing"}


async def test_every_example_is_covered() -> None:
    covered = {"batch-loop", "fan-out-fan-in", "delay-and-wait", "webhook-retry-deadletter",
               "support-triage", "subworkflow-caller", "bench-5node"}  # bench: test_smoke
    assert {p.stem for p in EXAMPLES.glob("*.yaml")} == covered
