"""Provider dialects (pure): request bodies, answer parsing, agent output, prices."""

from __future__ import annotations

import pytest
from flowlog.streams.executors.errors import ProviderResponseError
from flowlog.streams.executors.nodes.agent import agent_output, parse_json_text, provider_name
from flowlog.streams.executors.providers import AnthropicProvider, OpenAIProvider
from flowlog.streams.executors.providers.base import ToolResult, ToolSpec, model_tool_name
from flowlog.streams.executors.providers.pricing import cost_usd, price_of

SPEC = ToolSpec("kb_search", "Search", {"type": "object", "properties": {"q": {"type": "string"}}})


def test_openai_body_and_parse() -> None:
    p = OpenAIProvider("http://x/v1/", "k")
    assert p.url == "http://x/v1/chat/completions"
    assert p.headers() == {"Authorization": "Bearer k"}
    messages = p.start("sys", "hi")
    body = p.body("gpt-4o-mini", "sys", messages, [SPEC])
    assert body["messages"][0] == {"role": "system", "content": "sys"}
    assert body["tools"][0] == {"type": "function", "function": {
        "name": "kb_search", "description": "Search", "parameters": SPEC.parameters}}
    turn = p.parse({
        "choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "kb_search", "arguments": '{"q": "x"}'}},
            {"id": "c2", "type": "function", "function": {"name": "kb_search",
                                                          "arguments": "{bad"}}]},
            "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3},
    })  # fmt: skip
    assert (turn.input_tokens, turn.output_tokens) == (12, 3)
    assert turn.tool_uses[0].arguments == {"q": "x"} and turn.tool_uses[0].error is None
    assert turn.tool_uses[1].arguments is None and "not valid JSON" in (turn.tool_uses[1].error
                                                                          or "")
    p.add_results(messages, [ToolResult(turn.tool_uses[0], "r", False)])
    assert messages[-1] == {"role": "tool", "tool_call_id": "c1", "content": "r"}
    with pytest.raises(ProviderResponseError, match="choices"):
        p.parse({"nope": 1})


def test_anthropic_body_and_parse() -> None:
    p = AnthropicProvider("http://x", "k", max_tokens=99, version="2023-06-01")
    assert p.url == "http://x/v1/messages"
    assert p.headers() == {"anthropic-version": "2023-06-01", "x-api-key": "k"}
    messages = p.start("sys", "hi")
    body = p.body("claude-3-5-haiku", "sys", messages, [SPEC])
    assert body["system"] == "sys" and body["max_tokens"] == 99
    assert body["tools"] == [{"name": "kb_search", "description": "Search",
                              "input_schema": SPEC.parameters}]  # fmt: skip
    turn = p.parse({"content": [{"type": "text", "text": "let me look"},
                                {"type": "tool_use", "id": "t1", "name": "kb_search",
                                 "input": {"q": "x"}}],
                    "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 2}})
    assert turn.text == "let me look" and turn.tool_uses[0].arguments == {"q": "x"}
    p.add_results(messages, [ToolResult(turn.tool_uses[0], "boom", True)])
    assert messages[-1] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": "boom", "is_error": True}]}


def test_agent_output_and_json_text() -> None:
    assert agent_output("plain", 1) == {"text": "plain", "steps": 1}
    out = agent_output('```json\n{"category": "bug", "text": "x"}\n```', 2)
    assert out["json"] == {"category": "bug", "text": "x"}
    assert out["category"] == "bug" and out["text"].startswith("```")  # no clobbering
    assert parse_json_text("[1, 2]") == [1, 2]
    assert parse_json_text("{not json") is None


def test_provider_choice_and_tool_names() -> None:
    assert provider_name({"model": "claude-3-5-haiku"}) == "anthropic"
    assert provider_name({"model": "gpt-4o-mini"}) == "openai"
    assert provider_name({"model": "claude-x", "provider": "OpenAI"}) == "openai"
    assert model_tool_name("billing.refund_eligibility") == "billing_refund_eligibility"


def test_prices_by_longest_prefix() -> None:
    assert price_of("gpt-4o-mini-2024-07-18") == (0.15, 0.60)
    assert price_of("gpt-4o-2024-08-06") == (2.50, 10.00)
    assert price_of("unknown-model") == (0.0, 0.0)
    assert cost_usd("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert cost_usd("mine", 1000, 0, {"mine": [2.0, 4.0]}) == pytest.approx(0.002)
