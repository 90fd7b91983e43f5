"""What the agent loop needs from a model provider's HTTP API."""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from flowlog.streams.executors.errors import ProviderResponseError

_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")


def model_tool_name(name: str) -> str:
    """A tool name both APIs accept (`[a-zA-Z0-9_-]{1,64}`): `a.b` → `a_b`."""
    return _UNSAFE.sub("_", name)[:64] or "tool"


@dataclass(frozen=True)
class ToolSpec:
    name: str  # as sent to the model (model_tool_name)
    description: str
    parameters: dict[str, Any]  # JSON schema


@dataclass(frozen=True)
class ToolUse:
    id: str
    name: str
    arguments: Any  # parsed JSON, or None when `error` says why it could not be read
    error: str | None = None


@dataclass
class ModelTurn:
    text: str
    tool_uses: list[ToolUse]
    input_tokens: int
    output_tokens: int
    stop_reason: str | None
    assistant_message: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolResult:
    use: ToolUse
    content: str
    is_error: bool


class Provider(ABC):
    """One HTTP dialect: builds requests, reads answers, keeps the conversation."""

    name: str

    def __init__(self, base_url: str, api_key: str | None, **options: Any) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.options = options

    @property
    @abstractmethod
    def url(self) -> str: ...

    @abstractmethod
    def headers(self) -> dict[str, str]: ...

    @abstractmethod
    def start(self, system: str | None, prompt: str) -> list[dict[str, Any]]: ...

    @abstractmethod
    def body(
        self,
        model: str,
        system: str | None,
        messages: list[dict[str, Any]],
        tools: list[ToolSpec],
    ) -> dict[str, Any]: ...

    @abstractmethod
    def parse(self, data: Any) -> ModelTurn: ...

    @abstractmethod
    def add_results(self, messages: list[dict[str, Any]], results: list[ToolResult]) -> None: ...


def need(data: Any, *path: str | int) -> Any:
    """`data[path...]`, or `ProviderResponseError` naming what is missing."""
    cur = data
    for key in path:
        try:
            cur = cur[key]
        except (KeyError, IndexError, TypeError):
            where = ".".join(str(p) for p in path)
            raise ProviderResponseError(
                f"model answer lacks {where}: {json.dumps(data)[:200]}"
            ) from None
    return cur
