"""`tool` nodes: look the tool up, validate the node's input against its `Input`, run it."""

from __future__ import annotations

import time
from typing import Any

from flowlog.streams.executors.errors import ExecutorError, InvalidConfig, ToolFailed
from flowlog.streams.executors.nodes.base import NodeContext
from flowlog.streams.executors.tools.base import Tool
from flowlog.streams.executors.tools.registry import validate_input


async def run_tool_node(ctx: NodeContext) -> Any:
    name = ctx.config.get("tool")
    if not isinstance(name, str) or not name:
        raise InvalidConfig("a tool node needs `tool: <name>`; fix the workflow definition")
    tool = ctx.tools.get(name)
    input_value = ctx.task.input if ctx.task.input is not None else {}
    started = time.monotonic()
    ok = False
    try:
        result = await call_tool(tool, input_value, ctx)
        ok = True
        return result
    finally:
        ctx.record_tool_call(name, ok, time.monotonic() - started)


async def call_tool(
    tool: Tool, value: Any, ctx: NodeContext, *, call_key: str | None = None
) -> Any:
    """Validate and run; unexpected exceptions become retryable `tool_error`."""
    typed = validate_input(tool, value)
    try:
        return await tool.run(typed, ctx.tool_context(call_key))
    except (ExecutorError, TimeoutError):
        raise
    except NotImplementedError as exc:
        raise ToolFailed(f"tool {tool.name!r} is not implemented", retryable=False) from exc
    except Exception as exc:
        raise ToolFailed(f"tool {tool.name!r} failed: {type(exc).__name__}: {exc}") from exc
