"""Tool plugins: the protocol, the registry (entry points `flowlog.tools`), built-ins."""

from flowlog.streams.executors.tools.base import BaseTool, Tool, ToolContext, input_schema
from flowlog.streams.executors.tools.registry import (
    ENTRY_POINT_GROUP,
    ToolRegistry,
    validate_input,
)

__all__ = [
    "ENTRY_POINT_GROUP", "BaseTool", "Tool", "ToolContext", "ToolRegistry",
    "input_schema", "validate_input",
]  # fmt: skip
