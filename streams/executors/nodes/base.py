"""What a node runner gets: the task, its resolved config, and the executor's services."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from flowlog.streams.executors.tools.base import ToolContext

if TYPE_CHECKING:
    from flowlog.schemas.events import NodeTaskIssued
    from flowlog.streams.executors.http import HttpGateway
    from flowlog.streams.executors.limits import Limits
    from flowlog.streams.executors.secrets import Redactor, SecretResolver
    from flowlog.streams.executors.tools.registry import ToolRegistry

    from flowlog.settings import Settings


@dataclass
class NodeContext:
    task: NodeTaskIssued
    config: dict[str, Any]  # task.config with secrets resolved: never log or report it
    settings: Settings
    tools: ToolRegistry
    http: HttpGateway
    limits: Limits
    secrets: SecretResolver
    redactor: Redactor
    deadline: float  # time.monotonic() value
    model_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()

    def tool_context(self, call_key: str | None = None) -> ToolContext:
        return ToolContext(
            task_key=self.task.task_key,
            execution_id=self.task.execution_id,
            node_id=self.task.node_id,
            attempt=self.task.attempt,
            deadline=self.deadline,
            settings=self.settings,
            http=self.http,
            call_key=call_key,
        )

    def record_tool_call(self, tool: str, ok: bool, latency_s: float) -> None:
        self.tool_calls.append({"tool": tool, "ok": ok, "latency_ms": round(latency_s * 1000)})


class NodeRunner(Protocol):
    """Runs one node type's task; returns the output (JSON) or raises an ExecutorError."""

    async def __call__(self, ctx: NodeContext) -> Any: ...
