"""What a tool plugin is, and what it gets to work with."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

if TYPE_CHECKING:
    from flowlog.streams.executors.http import HttpGateway

    from flowlog.settings import Settings


@runtime_checkable
class Tool(Protocol):
    """A tool: `name`, `description`, a pydantic `Input` model and `async run(input, ctx)`.

    `run` returns a JSON value. Raise `flowlog.streams.executors.errors.NonRetryable` for
    failures no retry can fix; any other exception is reported as retryable `tool_error`.
    """

    name: str
    description: str
    Input: type[BaseModel]

    async def run(self, input: Any, ctx: ToolContext) -> Any: ...


class BaseTool:
    """Convenience base: subclass, set the class attributes, implement `run`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Input: ClassVar[type[BaseModel]]

    async def run(self, input: Any, ctx: ToolContext) -> Any:
        raise NotImplementedError


@dataclass
class ToolContext:
    """What a running tool knows about its task; `http` makes outside calls properly."""

    task_key: str
    execution_id: str
    node_id: str
    attempt: int
    deadline: float  # time.monotonic() value
    settings: Settings
    http: HttpGateway
    call_key: str | None = None  # set for tool calls inside an agent: task key + step.call
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def idempotency_key(self) -> str:
        """What outside calls carry as Idempotency-Key (stable across redeliveries)."""
        return self.call_key or self.task_key

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()


def input_schema(tool: Tool) -> dict[str, Any]:
    """The tool's input as JSON schema (for agents' tool definitions)."""
    return tool.Input.model_json_schema()
