"""Agent nodes against the fake LLM server (a real HTTP server speaking both APIs)."""

from __future__ import annotations

from typing import Any

import pytest
from flowlog.schemas.shared import ModelCall, ToolCall
from flowlog.streams.executors import TaskRunner, ToolContext
from flowlog.streams.executors.providers.pricing import cost_usd
from flowlog.streams.executors.tools import ToolRegistry
from pydantic import BaseModel, Field

from flowlog.settings import Settings
from tests.support.fake_llm import FakeLLMServer, Turn
from tests.support.fake_webhook import FakeWebhookServer
from tests.support.tasks import make_task


class LookupCustomer:
    name = "crm.lookup_customer"
    description = "Find a customer by email."

    class Input(BaseModel):
        email: str = Field(description="The customer's email address.")

    async def run(self, input: Any, ctx: ToolContext) -> Any:
        return {"customer_id": f"c-{input.email.split('@')[0]}", "plan": "pro"}


@pytest.fixture
def crm_tools(tools: ToolRegistry) -> ToolRegistry:
    tools.register(LookupCustomer)
    return tools


def agent(model: str, **config: Any) -> dict[str, Any]:
    return {"model": model, "prompt": "Classify the ticket. Answer JSON.",
            "system": "You are a triage bot.", **config}  # fmt: skip


async def test_openai_tool_loop(
    exec_settings: Settings, crm_tools: ToolRegistry, fake_llm: FakeLLMServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLOWLOG_SECRET_OPENAI_KEY", "sk-test-123")
    settings = exec_settings.model_copy(update={"openai_api_key": "${secret:OPENAI_KEY}"})
    fake_llm.api_key = "sk-test-123"
    fake_llm.script(
        Turn.tools(("crm_lookup_customer", {"email": "ann@example.com"}),
                   input_tokens=100, output_tokens=20),
        Turn.final('{"category": "billing", "customer_id": "c-ann"}',
                   input_tokens=150, output_tokens=30),
    )  # fmt: skip
    runner = TaskRunner(settings, tools=crm_tools)
    try:
        task = make_task("agent", agent("gpt-4o-mini", tools=["crm.lookup_customer"]))
        out = await runner.run(task)
    finally:
        await runner.aclose()
    assert out.status == "succeeded", out.error
    assert out.output["steps"] == 2 and out.output["category"] == "billing"
    assert out.output["json"] == {"category": "billing", "customer_id": "c-ann"}
    assert [(c["provider"], c["model"], c["input_tokens"], c["output_tokens"])
            for c in out.model_calls] == [("openai", "gpt-4o-mini", 100, 20),
                                          ("openai", "gpt-4o-mini", 150, 30)]  # fmt: skip
    assert out.model_calls[0]["cost_usd"] == pytest.approx(cost_usd("gpt-4o-mini", 100, 20))
    assert out.model_calls[0]["cost_usd"] > 0
    assert [(c["tool"], c["ok"]) for c in out.tool_calls] == [("crm.lookup_customer", True)]
    assert [ModelCall(**c) for c in out.model_calls]  # the records fit the event contract
    assert [ToolCall(**c) for c in out.tool_calls]
    assert "sk-test-123" not in repr(out)

    first, second = fake_llm.requests
    assert first.path == "/v1/chat/completions"
    assert first.headers["authorization"] == "Bearer sk-test-123"
    assert first.headers["idempotency-key"] == f"{task.task_key}:1"
    assert second.headers["idempotency-key"] == f"{task.task_key}:2"
    (tool_def,) = first.body["tools"]
    assert tool_def["type"] == "function"
    assert tool_def["function"]["name"] == "crm_lookup_customer"
    assert tool_def["function"]["parameters"]["properties"]["email"]["type"] == "string"
    assert first.body["messages"][0] == {"role": "system", "content": "You are a triage bot."}
    tool_msg = second.body["messages"][-1]
    assert tool_msg["role"] == "tool"
    assert tool_msg["tool_call_id"] == second.body["messages"][-2]["tool_calls"][0]["id"]
    assert '"customer_id": "c-ann"' in tool_msg["content"]


async def test_anthropic_tool_loop(
    exec_settings: Settings, crm_tools: ToolRegistry, fake_llm: FakeLLMServer
) -> None:
    settings = exec_settings.model_copy(update={"anthropic_api_key": "ak-test"})
    fake_llm.api_key = "ak-test"
    fake_llm.script(
        Turn.tools(("crm_lookup_customer", {"email": "bob@example.com"}), text="Looking up."),
        Turn.final("It is a bug report."),
    )
    runner = TaskRunner(settings, tools=crm_tools)
    try:
        task = make_task("agent", agent("claude-3-5-haiku", tools=["crm.lookup_customer"]))
        out = await runner.run(task)
    finally:
        await runner.aclose()
    assert out.status == "succeeded", out.error
    assert out.output == {"text": "It is a bug report.", "steps": 2}
    assert {c["provider"] for c in out.model_calls} == {"anthropic"}
    assert out.model_calls[1]["cost_usd"] == pytest.approx(cost_usd("claude-3-5-haiku", 11, 7))
    first, second = fake_llm.requests
    assert first.path == "/v1/messages"
    assert first.headers["x-api-key"] == "ak-test"
    assert first.headers["anthropic-version"] == settings.anthropic_version
    assert first.headers["idempotency-key"] == f"{task.task_key}:1"
    assert first.body["system"] == "You are a triage bot." and first.body["max_tokens"] > 0
    assert first.body["tools"][0]["name"] == "crm_lookup_customer"
    assert "email" in first.body["tools"][0]["input_schema"]["properties"]
    assistant, results = second.body["messages"][-2:]
    assert assistant["role"] == "assistant"
    use = next(b for b in assistant["content"] if b["type"] == "tool_use")
    (result,) = results["content"]
    assert result["type"] == "tool_result" and result["tool_use_id"] == use["id"]
    assert result["is_error"] is False and "c-bob" in result["content"]


async def test_bad_tool_arguments_go_back_to_the_model(
    runner: TaskRunner, crm_tools: ToolRegistry, fake_llm: FakeLLMServer
) -> None:
    fake_llm.script(
        Turn.tools(("crm_lookup_customer", {"mail": "x"})),
        Turn.tools(("no_such_tool", {})),
        Turn.tools(("crm_lookup_customer", {}), raw_arguments="{oops"),
        Turn.final("gave up"),
    )
    task = make_task("agent", agent("gpt-4o-mini", tools=["crm.lookup_customer"]))
    out = await runner.run(task)
    assert out.status == "succeeded" and out.output["steps"] == 4
    assert [c["ok"] for c in out.tool_calls] == [False, False]  # unknown tool: no call
    contents = [r.body["messages"][-1]["content"] for r in fake_llm.requests[1:]]
    assert "'email' is missing" in contents[0]
    assert "no tool named 'no_such_tool'" in contents[1]
    assert "not valid JSON" in contents[2]


async def test_http_request_tool_inside_an_agent_gets_a_per_call_key(
    runner: TaskRunner, fake_llm: FakeLLMServer, fake_webhook: FakeWebhookServer
) -> None:
    fake_llm.script(Turn.tools(("http_request", {"url": f"{fake_webhook.url}/kb?q=refund"})),
                    Turn.final("done"))  # fmt: skip
    task = make_task("agent", agent("gpt-4o-mini", tools=["http_request"]))
    out = await runner.run(task)
    assert out.status == "succeeded", out.error
    assert fake_webhook.requests[0].headers["idempotency-key"] == f"{task.task_key}:1.0"


async def test_max_steps(runner: TaskRunner, fake_llm: FakeLLMServer) -> None:
    fake_llm.script(*[Turn.tools(("echo", {"message": "again"})) for _ in range(3)])
    out = await runner.run(make_task("agent", agent("gpt-4o-mini", tools=["echo"], max_steps=2)))
    assert out.error and out.error["type"] == "max_steps_exceeded"
    assert out.error["retryable"] is False
    assert len(out.model_calls) == 2 and len(out.tool_calls) == 1  # recorded even on failure


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (529, True), (429, True),
                                                    (401, False), (400, False)])  # fmt: skip
async def test_provider_errors(
    runner: TaskRunner, fake_llm: FakeLLMServer, status: int, retryable: bool
) -> None:
    fake_llm.script(Turn.error(status))
    out = await runner.run(make_task("agent", agent("claude-3-5-haiku")))
    assert out.error and out.error["type"] == "http_error"
    assert out.error["retryable"] is retryable


async def test_model_timeout_and_breaker_per_provider_model(
    exec_settings: Settings, fake_llm: FakeLLMServer
) -> None:
    runner = TaskRunner(exec_settings.model_copy(update={"breaker_failure_threshold": 2}))
    try:
        fake_llm.script(Turn.hang(3), Turn.error(503))
        out = await runner.run(make_task("agent", agent("gpt-4o-mini"), timeout_ms=300))
        assert out.error and out.error["type"] == "timeout" and out.error["retryable"]
        out = await runner.run(make_task("agent", agent("gpt-4o-mini")))
        assert out.error and out.error["type"] == "http_error"
        out = await runner.run(make_task("agent", agent("gpt-4o-mini")))
        assert out.error and out.error["type"] == "circuit_open"
        assert len(fake_llm.requests) == 2
        # another model of the same provider has its own breaker
        out = await runner.run(make_task("agent", agent("gpt-4.1-mini")))
        assert out.status == "succeeded" and out.output["text"] == "done"
    finally:
        await runner.aclose()


async def test_config_errors(runner: TaskRunner) -> None:
    out = await runner.run(make_task("agent", {"prompt": "hi"}))
    assert out.error and out.error["type"] == "invalid_config" and not out.error["retryable"]
    out = await runner.run(make_task("agent", agent("m", provider="gemini")))
    assert out.error and "unknown" in out.error["message"]
    out = await runner.run(make_task("agent", agent("m", tools=["not_installed"])))
    assert out.error and out.error["type"] == "tool_not_found"
