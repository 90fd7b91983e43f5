"""Anthropic-compatible Messages API: `POST {base_url}/v1/messages`, tool_use/tool_result."""

from __future__ import annotations

from typing import Any

from flowlog.streams.executors.providers.base import (
    ModelTurn,
    Provider,
    ToolResult,
    ToolSpec,
    ToolUse,
    need,
)


class AnthropicProvider(Provider):
    name = "anthropic"

    @property
    def url(self) -> str:
        return f"{self.base_url}/v1/messages"

    def headers(self) -> dict[str, str]:
        headers = {"anthropic-version": str(self.options.get("version") or "2023-06-01")}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        return headers

    def start(self, system: str | None, prompt: str) -> list[dict[str, Any]]:
        return [{"role": "user", "content": prompt}]

    def body(
        self,
        model: str,
        system: str | None,
        messages: list[dict[str, Any]],
        tools: list[ToolSpec],
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": int(self.options.get("max_tokens") or 1024),
            "messages": messages,
        }
        if system:
            body["system"] = system
        if tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in tools
            ]
        return body

    def parse(self, data: Any) -> ModelTurn:
        content = need(data, "content")
        texts, uses = [], []
        for block in content:
            kind = block.get("type")
            if kind == "text":
                texts.append(block.get("text") or "")
            elif kind == "tool_use":
                uses.append(ToolUse(id=str(need(block, "id")), name=str(need(block, "name")),
                                    arguments=block.get("input") or {}))  # fmt: skip
        usage = data.get("usage") or {}
        return ModelTurn(
            text="".join(texts),
            tool_uses=uses,
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=int(usage.get("output_tokens") or 0),
            stop_reason=data.get("stop_reason"),
            assistant_message={"role": "assistant", "content": content},
        )

    def add_results(self, messages: list[dict[str, Any]], results: list[ToolResult]) -> None:
        messages.append({
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": r.use.id, "content": r.content,
                 "is_error": r.is_error}
                for r in results
            ],
        })  # fmt: skip
