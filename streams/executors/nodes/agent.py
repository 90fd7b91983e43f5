"""`agent` nodes: an LLM with tool calling, over OpenAI- or Anthropic-compatible HTTP.

The loop calls the model; while it asks for tools, they are validated and run (their
results, or errors, go back to the model) and the model is called again, up to
`max_steps` model calls. Every model call and tool call is recorded. The output is
`{"text": final text, "steps": model calls}`, plus `"json"` when the text is JSON (a
fenced ```json block counts); an object's keys are also copied to the top level when
they do not clash, so `nodes.classify.output.category` works for a JSON-answering prompt.
"""

from __future__ import annotations

import json
import time
from typing import Any

from flowlog.streams.executors.errors import ExecutorError, InvalidConfig, MaxStepsExceeded
from flowlog.streams.executors.nodes.base import NodeContext
from flowlog.streams.executors.nodes.tool import call_tool
from flowlog.streams.executors.providers import PROVIDERS, Provider
from flowlog.streams.executors.providers.base import (
    ModelTurn,
    ToolResult,
    ToolSpec,
    ToolUse,
    model_tool_name,
)
from flowlog.streams.executors.providers.pricing import cost_usd
from flowlog.streams.executors.secrets import find_refs
from flowlog.streams.executors.tools.base import Tool, input_schema

RESERVED_OUTPUT_KEYS = ("text", "steps", "json")


def provider_name(config: dict[str, Any]) -> str:
    name = config.get("provider")
    if name:
        return str(name).lower()
    return "anthropic" if str(config.get("model", "")).startswith("claude") else "openai"


async def build_provider(ctx: NodeContext, name: str) -> Provider:
    cls = PROVIDERS.get(name)
    if cls is None:
        raise InvalidConfig(
            f"agent provider {name!r} is unknown; use one of {', '.join(sorted(PROVIDERS))}"
        )
    family = "anthropic" if "anthropic" in name else "openai"
    s = ctx.settings
    base_url = ctx.config.get("base_url") or getattr(s, f"{family}_base_url")
    api_key = ctx.config.get("api_key") or getattr(s, f"{family}_api_key")
    if isinstance(api_key, str) and find_refs(api_key):
        resolved, used = await ctx.secrets.resolve_config(api_key)
        ctx.redactor.add(*used)
        api_key = resolved
    elif api_key:
        ctx.redactor.add(str(api_key))
    return cls(str(base_url), api_key, max_tokens=s.agent_max_tokens, version=s.anthropic_version)


def tool_specs(ctx: NodeContext) -> tuple[list[ToolSpec], dict[str, Tool]]:
    names = ctx.config.get("tools") or []
    if not isinstance(names, list):
        raise InvalidConfig("agent `tools` must be a list of tool names")
    specs: list[ToolSpec] = []
    by_model_name: dict[str, Tool] = {}
    for name in names:
        tool = ctx.tools.get(str(name))
        model_name = model_tool_name(tool.name)
        if model_name in by_model_name:
            raise InvalidConfig(
                f"agent tools {by_model_name[model_name].name!r} and {tool.name!r} both map to "
                f"the model tool name {model_name!r}; rename one"
            )
        by_model_name[model_name] = tool
        specs.append(ToolSpec(model_name, tool.description, input_schema(tool)))
    return specs, by_model_name


async def run_agent_node(ctx: NodeContext) -> Any:
    config = ctx.config
    model = config.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidConfig("an agent node needs `model`; fix the workflow definition")
    prompt = config.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidConfig("an agent node needs a non-empty `prompt`")
    system = config.get("system") or None
    max_steps = int(config.get("max_steps") or ctx.settings.agent_max_steps)
    pname = provider_name(config)
    provider = await build_provider(ctx, pname)
    specs, tools = tool_specs(ctx)
    messages = provider.start(system, prompt)
    target = f"{pname}:{model}"
    for step in range(1, max_steps + 1):
        turn = await call_model(ctx, provider, target, model, system, messages, specs, step)
        if not turn.tool_uses:
            return agent_output(turn.text, step)
        if step == max_steps:
            raise MaxStepsExceeded(
                f"agent still called tools after max_steps={max_steps} model calls; raise "
                f"max_steps on node {ctx.task.node_id!r} or make the prompt more direct"
            )
        messages.append(turn.assistant_message)
        results = [
            await run_tool_use(ctx, tools, use, f"{ctx.task.task_key}:{step}.{i}")
            for i, use in enumerate(turn.tool_uses)
        ]
        provider.add_results(messages, results)
    raise AssertionError("unreachable")  # the loop returns or raises on its last step


async def call_model(
    ctx: NodeContext,
    provider: Provider,
    target: str,
    model: str,
    system: str | None,
    messages: list[dict[str, Any]],
    specs: list[ToolSpec],
    step: int,
) -> ModelTurn:
    started = time.monotonic()
    response = await ctx.http.request(
        "POST", provider.url,
        idempotency_key=f"{ctx.task.task_key}:{step}", timeout_s=ctx.remaining_s(),
        headers=provider.headers(), json=provider.body(model, system, messages, specs),
        target=target,
    )  # fmt: skip
    latency = time.monotonic() - started
    try:
        data = response.json()
    except ValueError:
        data = None
    turn = provider.parse(data)
    ctx.model_calls.append({
        "provider": provider.name,
        "model": model,
        "input_tokens": turn.input_tokens,
        "output_tokens": turn.output_tokens,
        "cost_usd": cost_usd(model, turn.input_tokens, turn.output_tokens,
                             ctx.settings.model_prices),
        "latency_ms": round(latency * 1000),
    })  # fmt: skip
    return turn


async def run_tool_use(
    ctx: NodeContext, tools: dict[str, Tool], use: ToolUse, call_key: str
) -> ToolResult:
    """Run one tool the model asked for; failures go back to the model as error results."""
    tool = tools.get(use.name)
    if tool is None:
        known = ", ".join(sorted(tools)) or "none"
        return ToolResult(use, f"error: no tool named {use.name!r} here (tools: {known})", True)
    if use.error:
        ctx.record_tool_call(tool.name, False, 0.0)
        return ToolResult(use, f"error: {use.error}", True)
    started = time.monotonic()
    try:
        result = await call_tool(tool, use.arguments, ctx, call_key=call_key)
    except ExecutorError as exc:
        ctx.record_tool_call(tool.name, False, time.monotonic() - started)
        return ToolResult(use, f"error ({exc.type}): {ctx.redactor.text(exc.message)}", True)
    ctx.record_tool_call(tool.name, True, time.monotonic() - started)
    content = result if isinstance(result, str) else json.dumps(result, default=str)
    return ToolResult(use, ctx.redactor.text(content), False)


def agent_output(text: str, steps: int) -> dict[str, Any]:
    output: dict[str, Any] = {"text": text, "steps": steps}
    parsed = parse_json_text(text)
    if parsed is not None:
        output["json"] = parsed
        if isinstance(parsed, dict):
            for key, value in parsed.items():
                if key not in RESERVED_OUTPUT_KEYS:
                    output[key] = value
    return output


def parse_json_text(text: str) -> Any:
    """The JSON value a text holds (whole, or in a ```json fence), else None."""
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0].strip()
    if not body or body[0] not in "{[":
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None
