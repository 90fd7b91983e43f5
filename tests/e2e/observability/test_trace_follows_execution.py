"""One trace follows an execution through the roles: the in-memory exporter's spans of the
processor (or, in the classic layout, the orchestrator and dispatcher), executor and
projectors (read model, analytics, audit, live status) share one trace id and chain parent
to child, and the roles' and projectors' JSON log lines carry that trace id with the
execution's id."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from flowlog.projections.audit.projector import Runner as AuditRunner
from flowlog.projections.audit.store import AuditStore
from flowlog.projections.live import LivePublisher
from flowlog.projections.migrate import migrate
from flowlog.projections.runner import ProjectorRunner
from flowlog.projections.worker import make_projector
from flowlog.schemas.topics import TopicCatalog, apply_topics
from flowlog.streams.runtime.worker import Worker

from flowlog.observability import logs, tracing
from flowlog.observability.lag import LAG
from flowlog.observability.metrics import REGISTRY
from flowlog.settings import Settings
from tests.e2e.conftest import EXAMPLES, Engine

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


@pytest.fixture
async def projectors(engine_settings: Settings, pg_schema: str,
                     redis_url: str) -> AsyncIterator[Settings]:
    """The read model (with live status on Redis), analytics and audit projectors."""
    s = engine_settings.model_copy(update={"pg_schema": pg_schema, "redis_url": redis_url})
    await asyncio.to_thread(apply_topics, TopicCatalog.from_settings(s), s.bootstrap_servers)
    await asyncio.to_thread(migrate, s, pg_schema)
    store = await asyncio.to_thread(AuditStore, s, pg_schema)
    stop = asyncio.Event()
    runners: list[Any] = [
        ProjectorRunner(s, make_projector("readmodel", s), LivePublisher(s)),
        ProjectorRunner(s, make_projector("analytics", s), LivePublisher(s, enabled=False))]
    tasks = [asyncio.create_task(r.run(stop)) for r in runners]
    tasks.append(asyncio.create_task(AuditRunner(s, store).serve(stop)))
    try:
        yield s
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        store.close()


def _spans(exporter: Any, trace_id: str) -> list[Any]:
    return [s for s in exporter.get_finished_spans()
            if format(s.context.trace_id, "032x") == trace_id]


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]


#: layout -> (roles, the deciding role)
LAYOUTS = {"default": (["all"], "processor"),
           "classic": (["orchestrator", "executor", "dispatcher"], "orchestrator")}


@pytest.mark.parametrize("layout", list(LAYOUTS))
async def test_an_execution_without_outside_context_is_one_trace(
        layout: str, engine_settings: Settings, observed: tuple[Any, io.StringIO],
        projectors: Settings) -> None:
    exporter, out = observed
    roles, role = LAYOUTS[layout]
    worker = Worker(engine_settings, roles)
    await worker.start()
    engine = Engine(engine_settings, worker)
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
    assert root.name == f"{role} decide TriggerReceived"
    assert names.count("executor task") == 5
    assert names.count(f"{role} decide NodeResultReported") == 5
    for task in (s for s in spans if s.name == "executor task"):
        parent = by_id[task.parent.span_id]
        if role == "orchestrator":  # the dispatcher's span issued it
            assert parent.name == "dispatcher issue"
            parent = by_id[parent.parent.span_id]
        assert parent.name.startswith(f"{role} decide")
    if role == "orchestrator":
        assert names.count("dispatcher issue") >= 5
    for result in (s for s in spans if s.name == f"{role} decide NodeResultReported"):
        assert by_id[result.parent.span_id].name == "executor task"
    assert {s.attributes.get("flowlog.node_id") for s in spans
            if s.name == "executor task"} == {"A", "B", "C", "D", "E"}

    # the projectors: one span per execution-events record (= per decision), each a child
    # of the decision that wrote it; the live status publish continues the read model's
    records = len({e["causation_id"] for e in events})
    projections = ("projector readmodel", "projector analytics", "projector audit")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        spans = _spans(exporter, trace_id)
        names = [s.name for s in spans]
        if (all(names.count(p) >= records for p in projections)
                and any(s.name == "projector live"
                        and s.attributes.get("flowlog.status") == "succeeded" for s in spans)):
            break
        assert loop.time() < deadline, (
            f"projector spans of {trace_id} after 60 s: "
            f"{ {p: names.count(p) for p in (*projections, 'projector live')} }, "
            f"{records} records expected each")
        await asyncio.sleep(0.1)
    by_id = {s.context.span_id: s for s in spans}
    for span in (s for s in spans if s.name in projections):
        assert span.attributes["flowlog.execution_id"] == execution_id
        assert by_id[span.parent.span_id].name.startswith(f"{role} decide")
    for span in (s for s in spans if s.name == "projector live"):
        assert span.attributes["flowlog.execution_id"] == execution_id
        assert by_id[span.parent.span_id].name == "projector readmodel"

    lines = [ln for ln in _lines(out) if ln.get("trace_id") == trace_id]
    loggers = {ln["logger"] for ln in lines}
    assert {f"flowlog.streams.runtime.{role}", "flowlog.streams.runtime.executor",
            "flowlog.projections.runner", "flowlog.projections.audit.projector",
            "flowlog.projections.live"} <= loggers
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
    decide = next(s for s in spans if s.name == "processor decide TriggerReceived")
    assert decide.parent.span_id == caller.get_span_context().span_id
    assert sum(s.name == "executor task" for s in spans) == 5


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_the_processor_role_is_instrumented_like_the_orchestrator(
        engine_settings: Settings, observed: tuple[Any, io.StringIO]) -> None:
    """`worker processor executor`: the processor's spans chain trigger -> task -> result
    in one trace, its log lines carry it, and it counts records in and out, decisions and
    their latency, and its consumer group's lag."""
    exporter, out = observed
    decided_before = _sample("flowlog_decision_seconds_count", role="processor")
    worker = Worker(engine_settings, ["processor", "executor"])
    await worker.start()
    engine = Engine(engine_settings, worker)
    try:
        await engine.apply(EXAMPLES / "bench-5node.yaml")
        events = await engine.run("bench-5node", {})
        processor = worker.components["processor"]
        LAG.watch("processor", processor.consumer)
        await LAG.sample()
    finally:
        await worker.stop()
        LAG.consumers.pop("processor", None)
    assert events[-1]["event_type"] == "ExecutionSucceeded"
    execution_id = events[0]["execution_id"]
    trace_id = execution_id.replace("-", "")
    spans = _spans(exporter, trace_id)
    by_id = {s.context.span_id: s for s in spans}
    names = [s.name for s in spans]
    (root,) = [s for s in spans if s.parent is None]
    assert root.name == "processor decide TriggerReceived"
    assert names.count("executor task") == 5
    assert names.count("processor decide NodeResultReported") == 5
    for task in (s for s in spans if s.name == "executor task"):
        assert by_id[task.parent.span_id].name.startswith("processor decide")
    for result in (s for s in spans if s.name == "processor decide NodeResultReported"):
        assert by_id[result.parent.span_id].name == "executor task"

    lines = [ln for ln in _lines(out) if ln.get("trace_id") == trace_id]
    assert "flowlog.streams.runtime.processor" in {ln["logger"] for ln in lines}
    assert all(ln["execution_id"] == execution_id for ln in lines)

    topics = engine_settings.topic_prefix
    assert _sample("flowlog_events_in_total", role="processor",
                   topic=f"{topics}triggers") >= 1
    assert _sample("flowlog_events_in_total", role="processor",
                   topic=f"{topics}node-results") >= 5
    assert _sample("flowlog_events_out_total", role="processor",
                   topic=f"{topics}execution-events") >= 6
    assert _sample("flowlog_events_out_total", role="processor",
                   topic=f"{topics}node-tasks") >= 5
    assert _sample("flowlog_decision_seconds_count", role="processor") - decided_before >= 6
    assert any(s.name == "flowlog_consumer_lag" and s.labels["group"] == "processor"
               for m in REGISTRY.collect() for s in m.samples)
