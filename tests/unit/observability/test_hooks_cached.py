"""The hooks' cheaper per-record paths produce what the plain calls produce.

* metric children cached per label values (``metrics.Children``): the value counted through
  the cache is the value the registry (and so a scrape) reads; a label set never seen
  before still works; the cache holds the metric's own child;
* ``tracing.begin``'s early returns: the same headers, trace ids and spans as the
  straightforward version kept below as the reference (tracing off, default settings,
  ratio 0, recorded), for every kind of input.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from prometheus_client import REGISTRY

from flowlog.observability import hooks, metrics, tracing
from flowlog.settings import Settings


def value(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- metric children ------------------------------------------------------------------------

def test_counted_through_the_cache_equals_the_registry() -> None:
    labels = {"role": "cache-role", "topic": "cache-topic"}
    before = value("flowlog_events_in_total", labels)
    for _ in range(3):
        hooks.records_in("cache-role", "cache-topic", 2)
    metrics.EVENTS_IN.labels("cache-role", "cache-topic").inc(1)  # the plain way, same series
    assert value("flowlog_events_in_total", labels) == before + 7
    assert metrics.EVENTS_IN_BY["cache-role", "cache-topic"] is (
        metrics.EVENTS_IN.labels("cache-role", "cache-topic"))


def test_a_label_set_never_seen_before_works() -> None:
    topic = f"new-{uuid.uuid4()}"
    assert ("executor", topic) not in metrics.EVENTS_OUT_BY
    hooks.records_out("executor", topic, 3)
    hooks.records_out("executor", topic)
    assert value("flowlog_events_out_total", {"role": "executor", "topic": topic}) == 4
    hooks.records_out("executor", topic, 0)  # nothing to count: no change
    assert value("flowlog_events_out_total", {"role": "executor", "topic": topic}) == 4


def test_histograms_through_the_cache() -> None:
    node_type = f"type-{uuid.uuid4().hex[:8]}"
    hooks.task_done(node_type, "succeeded", 0.002, None)
    hooks.task_done(node_type, "succeeded", 0.2, None)
    hooks.task_done(node_type, "failed", 0.002, None)
    ok = {"node_type": node_type, "status": "succeeded"}
    assert value("flowlog_task_seconds_count", ok) == 2
    assert value("flowlog_task_seconds_sum", ok) == pytest.approx(0.202)
    assert value("flowlog_task_seconds_bucket", {**ok, "le": "0.0025"}) == 1
    assert value("flowlog_task_seconds_count", {"node_type": node_type, "status": "failed"}) == 1

    class ExecutionFailed: ...
    class NodeScheduled: ...

    role = {"role": "processor"}
    before = value("flowlog_decision_seconds_count", role)
    decisions = value("flowlog_decisions_total", {})
    workflow = f"wf-{uuid.uuid4().hex[:8]}"
    hooks.decided([NodeScheduled()], workflow, 1, "processor")
    hooks.decided([NodeScheduled(), ExecutionFailed()], workflow, None, "processor")
    assert value("flowlog_decision_seconds_count", role) == before + 1  # timestamped only
    assert value("flowlog_decisions_total", {}) == decisions + 2
    assert value("flowlog_executions_finished_total",
                 {"workflow": workflow, "outcome": "failed"}) == 1


def test_decision_latency_series_exist_before_the_first_decision() -> None:
    for role in ("orchestrator", "processor"):
        assert REGISTRY.get_sample_value("flowlog_decision_seconds_count", {"role": role}) \
            is not None


def test_counting_off_counts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hooks, "COUNTING", False)
    topic = f"off-{uuid.uuid4()}"
    hooks.records_in("orchestrator", topic, 5)
    assert ("orchestrator", topic) not in metrics.EVENTS_IN_BY
    assert REGISTRY.get_sample_value(
        "flowlog_events_in_total", {"role": "orchestrator", "topic": topic}) is None


# --- tracing.begin against the straightforward version ----------------------------------------

def reference_begin(name: str, headers: Sequence[tuple[str, Any]] | None,
                    execution_id: str | None = None, root: bool = False) -> tracing.Hop:
    """``begin`` as it was before its early returns (same module helpers)."""
    tp = tracing._traceparent(headers)
    tracer_ = tracing._STATE.tracer
    if tp is None and execution_id is not None and tracer_ is not None:
        tp = tracing.execution_traceparent(execution_id)
        if root and tracing._sampled(tp):
            forced = tracing._FORCED.set(tracing.execution_ids(execution_id))
            try:
                span = tracer_.start_span(name, context=None)
            finally:
                tracing._FORCED.reset(forced)
            return tracing._hop(span, False)
        if root:
            return tracing.Hop([(tracing.TRACEPARENT, tp)], tp[3:35].decode())
        headers = [(tracing.TRACEPARENT, tp)]
    if tracer_ is None or (tp is not None and not tracing._sampled(tp)):
        if tp is None:
            return tracing.Hop([], None)
        return tracing.Hop([(tracing.TRACEPARENT, tp)],
                           tp[3:35].decode() if len(tp) >= 55 else None)
    parent = tracing.extract(headers) if tp is not None else None
    return tracing._hop(tracer_.start_span(name, context=parent), False)


EXEC = "5b3c2f7e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0"
INPUTS: list[Any] = [None, (), [("other", b"x")], [("traceparent", (TP + "0").encode())],
                     [("traceparent", (TP + "1").encode())], [("traceparent", TP + "1")],
                     [("traceparent", b"")], [("traceparent", b"garbage-01")]]


@pytest.fixture(params=["off", "default", "ratio 0", "recorded"])
def mode(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "off":
        tracing.configure_tracing(Settings(trace_enabled=False), "t")
    elif request.param == "default":
        tracing.configure_tracing(Settings(), "t")
    else:
        ratio = 0.0 if request.param == "ratio 0" else 1.0
        tracing.use_memory_exporter(Settings(trace_sample_ratio=ratio))
    yield request.param
    tracing.shutdown_tracing()


@pytest.mark.parametrize("headers", INPUTS)
@pytest.mark.parametrize(("execution_id", "root"), [(None, False), (EXEC, False), (EXEC, True)])
def test_begin_hands_on_what_the_reference_does(mode: str, headers: Any,
                                                execution_id: str | None, root: bool) -> None:
    # a span started with no usable context takes random ids: the same ones for both
    random.seed(7)
    new = tracing.begin("n", headers, execution_id=execution_id, root=root)
    random.seed(7)
    old = reference_begin("n", headers, execution_id, root)
    try:
        assert (new.headers, new.trace_id) == (old.headers, old.trace_id)
        assert (new.span is None) == (old.span is None)
        if new.span is not None:
            assert new.span.parent == old.span.parent
            assert new.span.get_span_context() == old.span.get_span_context()
    finally:
        new.end()
        old.end()


def test_unrecorded_hops_of_one_trace_are_one_inert_object() -> None:
    tracing.configure_tracing(Settings(), "t")  # the default: ids carried, nothing recorded
    try:
        tp = tracing.execution_traceparent(EXEC)
        first = tracing.begin("a", [("traceparent", bytes(bytearray(tp)))])
        second = tracing.begin("b", [("traceparent", bytes(bytearray(tp)))])
        own = tracing.begin("c", None, execution_id=EXEC, root=True)
        assert first is second is own  # the execution's records share it
        first.error(RuntimeError("x"))
        first.end()
        assert (second.headers, second.trace_id, second.span) == (
            [("traceparent", tp)], EXEC.replace("-", ""), None)
    finally:
        tracing.shutdown_tracing()
