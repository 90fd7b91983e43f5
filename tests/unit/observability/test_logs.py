"""JSON log lines: the stdlib bridge, the execution context on every line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from flowlog.observability import logs, tracing
from flowlog.settings import Settings


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    logs.configure_logging("test-proc", "DEBUG", stream=buf)
    yield buf
    logging.getLogger().handlers.clear()


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def test_stdlib_line_is_json_with_every_context_key(out: io.StringIO) -> None:
    logging.getLogger("flowlog.x").info("hello %s", "world")
    (line,) = lines(out)
    assert line["event"] == "hello world"
    assert line["level"] == "info" and line["logger"] == "flowlog.x"
    assert line["process"] == "test-proc"
    for key in ("execution_id", "workflow_id", "tenant", "trace_id", "timestamp"):
        assert key in line
    assert line["execution_id"] is None


def test_execution_context_lands_on_stdlib_and_structlog_lines(out: io.StringIO) -> None:
    with logs.execution("exec-1", "wf-1", "acme", "ab" * 16):
        logging.getLogger("a").warning("one")
        structlog.get_logger("b").info("two", extra_key=3)
    logging.getLogger("a").info("after")
    first, second, after = lines(out)
    for line in (first, second):
        assert (line["execution_id"], line["workflow_id"], line["tenant"], line["trace_id"]) == (
            "exec-1", "wf-1", "acme", "ab" * 16)
    assert second["extra_key"] == 3
    assert after["execution_id"] is None


def test_trace_id_falls_back_to_the_current_span(out: io.StringIO) -> None:
    tracing.use_memory_exporter(Settings())
    try:
        with tracing.tracer().start_as_current_span("s") as span:
            logging.getLogger("a").info("in span")
        (line,) = lines(out)
        assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    finally:
        tracing.shutdown_tracing()


def test_exceptions_are_rendered_and_remembered_as_last_error(out: io.StringIO) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("a").exception("task failed")
    (line,) = lines(out)
    assert "RuntimeError: boom" in str(line["exception"])
    assert logs.LAST_ERROR.last is not None
    assert "task failed" in str(logs.LAST_ERROR.last["message"])


async def test_context_is_copied_into_tasks_started_under_it(out: io.StringIO) -> None:
    async def child() -> None:
        logging.getLogger("t").info("in task")

    with logs.execution("exec-2", "wf", "t1"):
        task = asyncio.create_task(child())
    await task
    (line,) = [line for line in lines(out) if line["logger"] == "t"]
    assert line["execution_id"] == "exec-2"
