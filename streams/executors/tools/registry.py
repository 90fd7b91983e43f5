"""The tool registry: plugins from the `flowlog.tools` entry points, plus tools
registered in code (tests, embedding applications)."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Any

from flowlog.streams.executors.errors import InvalidInput, ToolNotFound
from flowlog.streams.executors.tools.base import Tool
from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "flowlog.tools"
_entry_point_tools: dict[str, Tool] | None = None  # loaded once per process


def _load_entry_points() -> dict[str, Tool]:
    global _entry_point_tools
    if _entry_point_tools is None:
        found: dict[str, Tool] = {}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                found[ep.name] = as_tool(ep.load(), ep.name)
            except Exception as exc:  # one broken plugin must not stop the others
                log.error("tool plugin %s (%s) failed to load: %s", ep.name, ep.value, exc)
        _entry_point_tools = found
    return _entry_point_tools


def as_tool(obj: Any, name: str | None = None) -> Tool:
    """A tool from a plugin object: an instance, or a class taking no arguments."""
    tool = obj() if isinstance(obj, type) else obj
    missing = [a for a in ("name", "description", "Input", "run") if not hasattr(tool, a)]
    if missing:
        raise TypeError(f"tool {name or obj!r} lacks {missing}; see docs/executors.md")
    if not (isinstance(tool.Input, type) and issubclass(tool.Input, BaseModel)):
        raise TypeError(f"tool {tool.name!r}: Input must be a pydantic BaseModel class")
    return tool


class ToolRegistry:
    """Tools by name. Entry points load once per process; `register` adds or overrides."""

    def __init__(self, *, entry_points: bool = True) -> None:
        self._tools: dict[str, Tool] = dict(_load_entry_points()) if entry_points else {}

    def register(self, tool: Any) -> Tool:
        """Add a tool (an instance or a no-argument class); returns it."""
        t = as_tool(tool)
        self._tools[t.name] = t
        return t

    def get(self, name: str) -> Tool:
        tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(sorted(self._tools)) or "none"
            raise ToolNotFound(
                f"no tool named {name!r} (known: {known}); install the plugin that provides "
                f"it (entry point group {ENTRY_POINT_GROUP!r}) or fix the node's tool name"
            )
        return tool

    def names(self) -> list[str]:
        return sorted(self._tools)

    def catalog(self) -> dict[str, dict[str, Any]]:
        """Each tool's input JSON schema by name: what definition checks need to know."""
        return {name: tool.Input.model_json_schema() for name, tool in self._tools.items()}

    def register_modules(self, modules: list[str]) -> None:
        """Register the ``TOOLS`` of each module (the ``FLOWLOG_TOOL_MODULES`` setting)."""
        import importlib

        for module in modules:
            for tool in getattr(importlib.import_module(module), "TOOLS", ()):
                self.register(tool)

    def __contains__(self, name: object) -> bool:
        return name in self._tools


def validate_input(tool: Tool, value: Any) -> BaseModel:
    """The tool's typed input; `InvalidInput` (not retryable) names field, value and fix."""
    try:
        return tool.Input.model_validate(value if value is not None else {})
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(tool, exc)) from None


def _expected(tool: Tool, loc: tuple[Any, ...]) -> str:
    """What a top-level field takes, from the tool's JSON schema ("" when unclear)."""
    try:
        prop = tool.Input.model_json_schema().get("properties", {}).get(str(loc[0]), {})
    except Exception:
        return ""
    if len(loc) != 1 or not prop:
        return ""
    kinds = (
        [prop.get("type")]
        if prop.get("type")
        else [p.get("type") for p in prop.get("anyOf", []) if p.get("type")]
    )
    if prop.get("enum"):
        return "one of " + ", ".join(repr(v) for v in prop["enum"])
    return " or ".join(k for k in kinds if k and k != "null")


def describe_validation_error(tool: Tool, exc: ValidationError) -> str:
    tool_name = tool.name
    problems = []
    for err in exc.errors(include_url=False)[:5]:
        field = ".".join(str(p) for p in err["loc"]) or "(input)"
        kind = err["type"]
        if kind == "missing":
            problems.append(f"field {field!r} is missing; fix: add {field!r} to the node's input")
        elif kind == "extra_forbidden":
            problems.append(
                f"field {field!r} is not an input of this tool; fix: remove it from the "
                f"node's input"
            )
        else:
            shown = repr(err.get("input"))
            if len(shown) > 80:
                shown = shown[:77] + "..."
            expected = _expected(tool, tuple(err["loc"]))
            if expected.startswith("one of"):
                want = expected
            else:
                want = f"a value of type {expected}" if expected else "a value that fits"
            problems.append(
                f"field {field!r} = {shown}: {err['msg']}; fix: give {field!r} {want} in the "
                f"node's input"
            )
    more = len(exc.errors()) - len(problems)
    tail = f" (and {more} more)" if more > 0 else ""
    return f"tool {tool_name!r} input is invalid: " + "; ".join(problems) + tail
