"""OpenAI-compatible chat completions: `POST {base_url}/chat/completions` with `tools`."""

from __future__ import annotations

import json
from typing import Any

from flowlog.streams.executors.providers.base import (
    ModelTurn,
    Provider,
    ToolResult,
    ToolSpec,
    ToolUse,
    need,
)


class OpenAIProvider(Provider):
    name = "openai"

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def start(self, system: str | None, prompt: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": prompt})
        return messages

    def body(
        self,
        model: str,
        system: str | None,
        messages: list[dict[str, Any]],
        tools: list[ToolSpec],
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "messages": messages}
        if tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                }
                for t in tools
            ]
        if self.options.get("max_tokens"):
            body["max_completion_tokens"] = self.options["max_tokens"]
        return body

    def parse(self, data: Any) -> ModelTurn:
        choice = need(data, "choices", 0)
        message = need(choice, "message")
        uses = []
        for call in message.get("tool_calls") or []:
            fn = need(call, "function")
            raw = fn.get("arguments") or "{}"
            try:
                args, error = (json.loads(raw) if isinstance(raw, str) else raw), None
            except ValueError as exc:
                args, error = None, f"arguments are not valid JSON: {exc}"
            uses.append(ToolUse(id=str(need(call, "id")), name=str(need(fn, "name")),
                                arguments=args, error=error))  # fmt: skip
        usage = data.get("usage") or {}
        assistant: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
        if message.get("tool_calls"):
            assistant["tool_calls"] = message["tool_calls"]
        return ModelTurn(
            text=message.get("content") or "",
            tool_uses=uses,
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            stop_reason=choice.get("finish_reason"),
            assistant_message=assistant,
        )

    def add_results(self, messages: list[dict[str, Any]], results: list[ToolResult]) -> None:
        for r in results:
            messages.append({"role": "tool", "tool_call_id": r.use.id, "content": r.content})
