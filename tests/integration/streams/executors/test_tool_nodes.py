"""Tool nodes through `TaskRunner.run`: registry, validation, errors, timeouts."""

from __future__ import annotations

import asyncio
from typing import Any

from flowlog.schemas.events import NodeResultReported
from flowlog.streams.executors import NonRetryable, TaskRunner, ToolContext
from flowlog.streams.executors.tools import ENTRY_POINT_GROUP, ToolRegistry
from pydantic import BaseModel

from flowlog.settings import Settings
from tests.support.fake_webhook import FakeWebhookServer
from tests.support.tasks import make_task


async def test_noop_returns_its_input_and_records_the_call(runner: TaskRunner) -> None:
    task = make_task("tool", {"tool": "noop"}, {"a": 1, "b": [1, 2]})
    out = await runner.run(task)
    assert out.status == "succeeded" and out.error is None
    assert out.output == {"a": 1, "b": [1, 2]}
    assert [c["tool"] for c in out.tool_calls] == ["noop"] and out.tool_calls[0]["ok"]
    assert out.started_at <= out.finished_at
    # the outcome fits the contract the streams runtime publishes
    NodeResultReported(
        execution_id=task.execution_id, workflow_id="wf-test", workflow_version=1,
        node_id=task.node_id, attempt=1, task_key=task.task_key, status=out.status,
        output=out.output, error=out.error, started_at=out.started_at,
        finished_at=out.finished_at, model_calls=out.model_calls, tool_calls=out.tool_calls,
    )  # fmt: skip


async def test_builtins_come_from_entry_points() -> None:
    names = ToolRegistry().names()
    assert {"noop", "echo", "sleep", "http_request"} <= set(names), ENTRY_POINT_GROUP


async def test_invalid_input_is_not_retryable_and_says_the_fix(runner: TaskRunner) -> None:
    out = await runner.run(make_task("tool", {"tool": "sleep"}, {"seconds": "soon"}))
    assert out.status == "failed" and out.error is not None
    assert out.error["type"] == "invalid_input" and out.error["retryable"] is False
    assert "'seconds'" in out.error["message"] and "'soon'" in out.error["message"]
    assert "fix:" in out.error["message"]


async def test_unknown_tool_and_node_types(runner: TaskRunner) -> None:
    out = await runner.run(make_task("tool", {"tool": "billing.refund"}, {}))
    assert out.error and out.error["type"] == "tool_not_found" and not out.error["retryable"]
    out = await runner.run(make_task("subworkflow", {"workflow": "child"}, {}))
    assert out.error and out.error["type"] == "unsupported" and not out.error["retryable"]
    out = await runner.run(make_task("transform", {"output": "1"}, {}))
    assert out.error and out.error["type"] == "unsupported"


class Flaky:
    name = "flaky"
    description = "fails as told"

    class Input(BaseModel):
        mode: str

    async def run(self, input: Any, ctx: ToolContext) -> Any:
        if input.mode == "bug":
            raise KeyError("missing")
        if input.mode == "final":
            raise NonRetryable("the customer does not exist; check the id")
        return {"task_key": ctx.task_key, "attempt": ctx.attempt}


async def test_tools_registered_in_code_and_their_errors(
    runner: TaskRunner, tools: ToolRegistry
) -> None:
    tools.register(Flaky)
    out = await runner.run(make_task("tool", {"tool": "flaky"}, {"mode": "ok"}, attempt=2))
    assert out.output == {"task_key": out.output["task_key"], "attempt": 2}
    assert out.output["task_key"].endswith(":n1:2")
    out = await runner.run(make_task("tool", {"tool": "flaky"}, {"mode": "bug"}))
    assert out.error == {"type": "tool_error", "retryable": True,
                         "message": "tool 'flaky' failed: KeyError: 'missing'"}  # fmt: skip
    out = await runner.run(make_task("tool", {"tool": "flaky"}, {"mode": "final"}))
    assert out.error and out.error["retryable"] is False
    assert out.tool_calls == [{"tool": "flaky", "ok": False, "latency_ms": 0}]


async def test_timeouts_and_deadlines(runner: TaskRunner) -> None:
    out = await runner.run(make_task("tool", {"tool": "sleep"}, {"seconds": 5}, timeout_ms=100))
    assert out.error and out.error["type"] == "timeout" and out.error["retryable"]
    out = await runner.run(make_task("tool", {"tool": "sleep"}, {"seconds": 5},
                                     timeout_ms=60_000, deadline_in_s=0.1))  # fmt: skip
    assert out.error and out.error["type"] == "timeout"
    out = await runner.run(make_task("tool", {"tool": "noop"}, {}, deadline_in_s=-1))
    assert out.error and out.error["type"] == "timeout" and "deadline" in out.error["message"]


async def test_http_request_tool(runner: TaskRunner, fake_webhook: FakeWebhookServer) -> None:
    task = make_task("tool", {"tool": "http_request"}, {
        "method": "POST", "url": f"{fake_webhook.url}/orders", "json": {"id": 7},
        "headers": {"X-Trace": "t1"},
    })  # fmt: skip
    out = await runner.run(task)
    assert out.status == "succeeded", out.error
    assert out.output["status"] == 200 and out.output["json"] == {"ok": True, "received": {"id": 7}}
    (req,) = fake_webhook.requests
    assert req.headers["idempotency-key"] == task.task_key
    assert req.headers["x-trace"] == "t1" and req.path == "/orders"

    fake_webhook.respond(404, {"error": "no such order"})
    out = await runner.run(task)
    assert out.error and out.error["type"] == "http_error" and not out.error["retryable"]
    fake_webhook.respond(404, {"error": "no such order"})
    lenient = make_task("tool", {"tool": "http_request"},
                        {"url": f"{fake_webhook.url}/o", "raise_for_status": False})
    out = await runner.run(lenient)
    assert out.status == "succeeded" and out.output["status"] == 404


class Gauge:
    """Counts how many runs overlap."""

    name = "gauge"
    description = "records concurrency"

    class Input(BaseModel):
        pass

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0

    async def run(self, input: Any, ctx: ToolContext) -> Any:
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(0.02)
        self.running -= 1
        return self.peak


async def test_concurrency_limit_per_node_type(exec_settings: Settings) -> None:
    settings = exec_settings.model_copy(update={"executor_concurrency": {"tool": 2}})
    tools = ToolRegistry(entry_points=False)
    gauge = Gauge()
    tools.register(gauge)
    runner = TaskRunner(settings, tools=tools)
    try:
        outs = await asyncio.gather(
            *(runner.run(make_task("tool", {"tool": "gauge"}, {})) for _ in range(6))
        )
    finally:
        await runner.aclose()
    assert all(o.status == "succeeded" for o in outs)
    assert gauge.peak == 2
