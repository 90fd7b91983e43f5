"""One trace follows an execution through the roles: the in-memory exporter's spans of the
orchestrator, dispatcher and executor share one trace id and chain parent to child, and
the roles' JSON log lines carry that trace id with the execution's id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flowlog.observability import logs, tracing
from flowlog.settings import Settings
from tests.e2e.conftest import EXAMPLES

pytestmark = pytest.mark.e2e


@pytest.fixture
def observed(engine_settings: Settings) -> Iterator[tuple[Any, io.StringIO]]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    logs.configure_logging("e2e-trace", "DEBUG", stream=out)
    exporter = tracing.use_memory_exporter(engine_settings, "e2e-trace")
    try:
        yield exporter, out
    finally:
        tracing.shutdown_tracing()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def _spans(exporter: Any, trace_id: str) -> list[Any]:
    return [s for s in exporter.get_finished_spans()
            if format(s.context.trace_id, "032x") == trace_id]


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]


async def test_an_execution_without_outside_context_is_one_trace(
        make_engine: Callable[..., Any], observed: tuple[Any, io.StringIO]) -> None:
    exporter, out = observed
    engine = await make_engine()
    try:
        await engine.apply(EXAMPLES / "bench-5node.yaml")
        events = await engine.run("bench-5node", {})
    finally:
        await engine.worker.stop()
    assert events[-1]["event_type"] == "ExecutionSucceeded"
    execution_id = events[0]["execution_id"]
    trace_id = execution_id.replace("-", "")  # its own trace: the execution id
    spans = _spans(exporter, trace_id)
    by_id = {s.context.span_id: s for s in spans}
    names = [s.name for s in spans]
    (root,) = [s for s in spans if s.parent is None]
    assert root.name == "orchestrator decide TriggerReceived"
    assert names.count("executor task") == 5
    assert names.count("orchestrator decide NodeResultReported") == 5
    assert names.count("dispatcher issue") >= 5
    for task in (s for s in spans if s.name == "executor task"):
        parent = by_id[task.parent.span_id]  # the dispatcher's span that issued it
        assert parent.name == "dispatcher issue"
        assert by_id[parent.parent.span_id].name.startswith("orchestrator decide")
    for result in (s for s in spans if s.name == "orchestrator decide NodeResultReported"):
        assert by_id[result.parent.span_id].name == "executor task"
    assert {s.attributes.get("flowlog.node_id") for s in spans
            if s.name == "executor task"} == {"A", "B", "C", "D", "E"}

    lines = [ln for ln in _lines(out) if ln.get("trace_id") == trace_id]
    loggers = {ln["logger"] for ln in lines}
    assert {"flowlog.streams.runtime.orchestrator", "flowlog.streams.runtime.executor"} <= loggers
    for line in lines:
        assert line["execution_id"] == execution_id
        assert line["process"] == "e2e-trace"
    assert any(ln.get("workflow_id") == "bench-5node" and ln.get("tenant") == "default"
               for ln in lines)


async def test_a_caller_trace_continues_through_the_engine(
        make_engine: Callable[..., Any], observed: tuple[Any, io.StringIO]) -> None:
    exporter, _ = observed
    engine = await make_engine()
    try:
        await engine.apply(EXAMPLES / "bench-5node.yaml")
        with tracing.tracer().start_as_current_span("api: POST /trigger") as caller:
            # the SDK publishes from a thread; to_thread copies the current span along
            execution_id = await engine.trigger("bench-5node", {})
        events = await engine.wait(execution_id)
    finally:
        await engine.worker.stop()
    assert events[-1]["event_type"] == "ExecutionSucceeded"
    trace_id = format(caller.get_span_context().trace_id, "032x")
    spans = _spans(exporter, trace_id)
    decide = next(s for s in spans if s.name == "orchestrator decide TriggerReceived")
    assert decide.parent.span_id == caller.get_span_context().span_id
    assert sum(s.name == "executor task" for s in spans) == 5
