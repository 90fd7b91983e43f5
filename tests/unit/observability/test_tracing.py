"""Trace context in Kafka headers: inject, extract, forward, sample."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace

from flowlog.observability import tracing
from flowlog.settings import Settings

TP_SAMPLED = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TP_UNSAMPLED = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


@pytest.fixture
def exporter() -> Iterator[object]:
    exp = tracing.use_memory_exporter(Settings(trace_sample_ratio=1.0))
    yield exp
    tracing.shutdown_tracing()


def test_carrier_reads_aiokafka_and_confluent_header_lists() -> None:
    assert tracing.carrier([("traceparent", TP_SAMPLED), ("x", None), ("y", "s")]) == {
        "traceparent": TP_SAMPLED.decode(), "y": "s"}
    assert tracing.carrier(None) == {}


def test_inject_then_extract_round_trips_the_span_context(exporter: object) -> None:
    with tracing.tracer().start_as_current_span("root") as span:
        headers = tracing.inject()
    assert [k for k, _ in headers] == ["traceparent"]
    ctx = tracing.extract(headers)
    got = trace.get_current_span(ctx).get_span_context()
    assert got.trace_id == span.get_span_context().trace_id
    assert got.span_id == span.get_span_context().span_id
    assert tracing.trace_id_of(headers) == format(got.trace_id, "032x")


def test_no_current_span_injects_nothing() -> None:
    assert tracing.inject() == []


def test_hop_chain_keeps_one_trace_id_and_parents(exporter: object) -> None:
    first = tracing.begin("orchestrator decide", None, {"execution_id": "e1"})
    second = tracing.begin("executor task", first.headers)
    third = tracing.begin("orchestrator decide", second.headers)
    for hop in (third, second, first):
        hop.end()
    spans = {s.name + str(i): s for i, s in enumerate(exporter.get_finished_spans())}  # type: ignore[attr-defined]
    assert len(spans) == 3
    trace_ids = {s.context.trace_id for s in spans.values()}
    assert len(trace_ids) == 1
    assert first.trace_id == second.trace_id == third.trace_id == format(trace_ids.pop(), "032x")
    by_id = {s.context.span_id: s for s in spans.values()}
    roots = [s for s in spans.values() if s.parent is None]
    assert len(roots) == 1 and roots[0].name == "orchestrator decide"
    child = next(s for s in spans.values() if s.name == "executor task")
    assert by_id[child.parent.span_id] is roots[0]


def test_unsampled_input_is_forwarded_without_a_span(exporter: object) -> None:
    hop = tracing.begin("decide", [("traceparent", TP_UNSAMPLED)])
    hop.end()
    assert hop.headers == [("traceparent", TP_UNSAMPLED)]
    assert hop.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert exporter.get_finished_spans() == ()  # type: ignore[attr-defined]


def test_sampled_input_gets_a_child_span(exporter: object) -> None:
    hop = tracing.begin("decide", [("traceparent", TP_SAMPLED)])
    hop.end()
    (span,) = exporter.get_finished_spans()  # type: ignore[attr-defined]
    assert format(span.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(span.parent.span_id, "016x") == "b7ad6b7169203331"
    assert hop.headers[0][1] != TP_SAMPLED  # our own span id now


def test_tracing_off_forwards_and_starts_nothing() -> None:
    tracing.configure_tracing(Settings(trace_enabled=False), "t")
    assert tracing.begin("x", None).headers == []
    hop = tracing.begin("x", [("traceparent", TP_SAMPLED)])
    assert hop.headers == [("traceparent", TP_SAMPLED)] and hop.span is None


def test_no_exporter_still_makes_and_carries_trace_ids() -> None:
    tracing.configure_tracing(Settings(otlp_endpoint=None), "t")
    try:
        root = tracing.begin("decide", None)
        assert root.trace_id is not None and root.span is None  # not recorded
        nxt = tracing.begin("task", root.headers)
        assert nxt.trace_id == root.trace_id and nxt.headers == root.headers
    finally:
        tracing.shutdown_tracing()


def test_ratio_zero_records_no_new_trace_but_follows_a_sampled_parent() -> None:
    exp = tracing.use_memory_exporter(Settings(trace_sample_ratio=0.0))
    try:
        tracing.begin("root", None).end()
        assert exp.get_finished_spans() == ()
        tracing.begin("child", [("traceparent", TP_SAMPLED)]).end()
        assert [s.name for s in exp.get_finished_spans()] == ["child"]
    finally:
        tracing.shutdown_tracing()


def test_error_is_recorded_on_the_span(exporter: object) -> None:
    hop = tracing.begin("decide", None)
    hop.error(ValueError("bad input"))
    hop.end()
    (span,) = exporter.get_finished_spans()  # type: ignore[attr-defined]
    assert span.status.status_code.name == "ERROR"
    assert span.events[0].name == "exception"


def test_sdk_headers_carry_the_callers_trace(exporter: object) -> None:
    from flowlog.schemas.sdk import trace_headers

    assert trace_headers() == []  # no span, nothing
    with tracing.tracer().start_as_current_span("webhook request") as span:
        (header,) = trace_headers()
        assert trace_headers({"traceparent": "00-given"}) == []  # the caller's wins
    assert header[0] == "traceparent"
    assert tracing.trace_id_of([header]) == format(span.get_span_context().trace_id, "032x")


EXEC = "01a2282b-0776-72e7-939f-2c8ff853e6bf"


def test_execution_without_context_gets_its_own_trace_rooted_at_the_trigger(
        exporter: object) -> None:
    trigger = tracing.begin("decide TriggerReceived", None, execution_id=EXEC, root=True)
    timer = tracing.begin("decide TimerFired", None, execution_id=EXEC)  # no headers
    task = tracing.begin("task", trigger.headers)
    for hop in (task, timer, trigger):
        hop.end()
    assert trigger.trace_id == timer.trace_id == task.trace_id == EXEC.replace("-", "")
    spans = {s.name: s for s in exporter.get_finished_spans()}  # type: ignore[attr-defined]
    root = spans["decide TriggerReceived"]
    assert root.parent is None
    assert root.context.span_id == tracing.execution_ids(EXEC)[1]
    assert spans["decide TimerFired"].parent.span_id == root.context.span_id
    assert spans["task"].parent.span_id == root.context.span_id


def test_execution_trace_without_exporter_costs_no_span() -> None:
    tracing.configure_tracing(Settings(), "t")
    try:
        hop = tracing.begin("decide", None, execution_id=EXEC, root=True)
        assert hop.span is None and hop.trace_id == EXEC.replace("-", "")
        assert hop.headers[0][1].endswith(b"-00")
    finally:
        tracing.shutdown_tracing()


def test_hooks_carry_headers_and_log_context(exporter: object) -> None:
    import asyncio

    from flowlog.observability import hooks, logs

    class Msg:
        key = EXEC.encode()
        headers = ()
        topic = "t.triggers"

    async def scenario() -> tuple[object, object]:
        scope = hooks.enter("decide", Msg(), root=True)
        hooks.describe("wf-1", "acme")
        ctx = logs.current_execution()
        out = hooks.headers()

        async def task() -> object:
            hooks.end_current()
            return logs.current_execution().execution_id

        t = asyncio.create_task(task())
        hooks.leave(scope, end=False)
        assert hooks.headers() is None and logs.current_execution().execution_id is None
        assert await t == EXEC
        return ctx, out

    ctx, out = asyncio.run(scenario())
    assert ctx.as_tuple() == (EXEC, "wf-1", "acme", EXEC.replace("-", ""))
    assert out and tracing.trace_id_of(out) == EXEC.replace("-", "")
    assert [s.name for s in exporter.get_finished_spans()] == ["decide"]  # type: ignore[attr-defined]
    assert hooks.headers_for(EXEC) == [("traceparent", tracing.execution_traceparent(EXEC))]
