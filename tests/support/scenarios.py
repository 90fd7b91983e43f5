"""Scripted runs of the example definitions (used by the example tests and the recorder)."""

from __future__ import annotations

from collections.abc import Callable

from flowlog.aggregates.execution import inputs as I

from tests.support.runs import Run, example

TICKET = {"id": "T-42", "subject": "Refund please", "body": "I was charged twice."}


def support_triage_billing() -> Run:
    run = Run(example("support-triage"), "triage-1")
    run.trigger({"ticket": TICKET}, source="webhook")
    run.advance(2)
    run.ok("classify", {"category": "billing", "customer_id": "C-7"},
           model_calls=({"provider": "anthropic", "model": "claude-3-5-haiku",
                         "input_tokens": 120, "output_tokens": 12, "cost_usd": 0.0004,
                         "latency_ms": 800},),
           tool_calls=({"tool": "lookup_customer", "ok": True, "latency_ms": 40},))  # fmt: skip
    run.advance(1)
    run.ok("refund_check", {"eligible": True, "amount": 20})
    run.advance(3)
    run.ok("draft", {"text": "We refunded you 20 EUR."})
    run.advance(1)
    run.ok("post_reply", {"status": 201})
    return run


def fan_out_fan_in() -> Run:
    run = Run(example("fan-out-fan-in"), "fan-1")
    run.trigger({"symbol": "ACME"}, source="schedule")
    run.ok("provider_a", {"price": 10.5})
    run.fail("provider_c", "provider down")
    run.ok("provider_b", {"price": 10.25})
    return run


def batch_loop() -> Run:
    run = Run(example("batch-loop"), "batch-1")
    run.trigger({"records": ["r1", "r2", "r3"]})
    run.ok("enrich[1]", {"id": "r2", "score": 2})
    run.fail("enrich[0]", "rate limited")
    run.ok("enrich[2]", {"id": "r3", "score": 3})
    run.fire("retry", "enrich[0]")
    run.ok("enrich[0]", {"id": "r1", "score": 1})
    return run


def webhook_dead_letter_then_retry() -> Run:
    run = Run(example("webhook-retry-deadletter"), "hook-1")
    run.trigger({"order_id": "O-1"}, source="event")
    run.fail("notify", "503")
    run.fire("retry", "notify")
    run.fire("node_timeout", "notify")  # attempt 2 times out
    run.fire("retry", "notify")
    run.fail("notify", "503")  # attempt 3: out of retries -> dead letter, incident
    run.advance(3600)
    run.send(I.RetryNodeRequested(event_id="dlq-retry-1", node_id="notify", reason="by hand"))
    run.ok("notify", {"status": 202})
    run.ok("record", {"ok": True})
    return run


def webhook_dead_letter_then_resume() -> Run:
    run = Run(example("webhook-retry-deadletter"), "hook-2")
    run.trigger({"order_id": "O-2"}, source="event")
    run.fail("notify", "bad request", retryable=False)
    run.send(I.ResumeRequested(event_id="resume-1", reason="partner notified by phone"))
    run.ok("record", {"ok": True})
    return run


def delay_and_wait_approved() -> Run:
    run = Run(example("delay-and-wait"), "quote-1")
    run.trigger({"quote_id": "Q-9"})
    run.ok("send_quote", {"sent": True})
    run.fire("delay", "cool_off")
    run.send(I.EventReceived(event_id="ev-1", event_name="quote.answered",
                             payload={"quote_id": "Q-other", "accepted": True}))  # fmt: skip
    run.advance(3600)
    run.send(I.EventReceived(event_id="ev-2", event_name="quote.answered",
                             payload={"quote_id": "Q-9", "accepted": True}))  # fmt: skip
    run.ok("approved", {"order": "SO-1"})
    return run


def delay_and_wait_expired() -> Run:
    run = Run(example("delay-and-wait"), "quote-2")
    run.trigger({"quote_id": "Q-10"})
    run.ok("send_quote", {"sent": True})
    run.fire("delay", "cool_off")
    run.fire("node_timeout", "approval")
    return run


def subworkflow_caller() -> Run:
    run = Run(example("subworkflow-caller"), "parent-1")
    run.trigger({"ticket": TICKET})
    run.ok("triage", {"category": "billing", "reply": "..."})
    return run


def bench_5node() -> Run:
    run = Run(example("bench-5node"), "bench-1")
    run.trigger({})
    for node in ("A", "C", "B", "D", "E"):
        run.ok(node, {})
    return run


SCENARIOS: dict[str, Callable[[], Run]] = {
    "support_triage_billing": support_triage_billing,
    "fan_out_fan_in": fan_out_fan_in,
    "batch_loop": batch_loop,
    "webhook_dead_letter_then_retry": webhook_dead_letter_then_retry,
    "webhook_dead_letter_then_resume": webhook_dead_letter_then_resume,
    "delay_and_wait_approved": delay_and_wait_approved,
    "delay_and_wait_expired": delay_and_wait_expired,
    "subworkflow_caller": subworkflow_caller,
    "bench_5node": bench_5node,
}
