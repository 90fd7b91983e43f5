"""Definition checks that know the tools (pure: the catalog is passed in)."""

from __future__ import annotations

from typing import Any

import pytest
from flowlog.aggregates.definition.tool_checks import check_tools
from flowlog.aggregates.definition.validate import validate_definition
from pydantic import BaseModel, ConfigDict

pytestmark = pytest.mark.unit


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    retries: int = 0


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")
    message: str


CATALOG: dict[str, dict[str, Any]] = {
    "strict": _Strict.model_json_schema(), "loose": _Loose.model_json_schema(),
    "plain": {"properties": {"a": {"type": "string"}}, "required": []},
}


def _spec(nodes: dict[str, Any]) -> Any:
    spec, issues = validate_definition({"id": "w", "nodes": nodes})
    assert spec is not None, issues
    return spec


def _paths(nodes: dict[str, Any], **kw: Any) -> list[tuple[str, str]]:
    return [(i.path, i.message) for i in check_tools(_spec(nodes), CATALOG, **kw)]


def test_a_matching_definition_has_no_issue() -> None:
    nodes = {"a": {"type": "tool", "tool": "strict", "input": {"url": '"x"'}},
             "b": {"type": "tool", "tool": "loose", "input": {"message": '"m"', "z": "1"}},
             "c": {"type": "agent", "model": "m", "prompt": "p", "tools": ["strict"]}}
    assert _paths(nodes) == []


def test_missing_required_and_unknown_fields_are_reported_at_the_input() -> None:
    issues = _paths({"a": {"type": "tool", "tool": "strict", "input": {"ur": '"x"'}}})
    assert [p for p, _ in issues] == ["nodes.a.input", "nodes.a.input"]
    assert "requires: url" in issues[0][1] and "does not take: ur" in issues[1][1]


def test_pydantic_default_extra_ignore_counts_as_unknown() -> None:
    issues = _paths({"a": {"type": "tool", "tool": "plain", "input": {"b": "1"}}})
    assert issues == [("nodes.a.input", "names field(s) tool 'plain' does not take: b")]


def test_unknown_tools_in_tool_agent_and_loop_body_nodes() -> None:
    nodes = {"a": {"type": "tool", "tool": "nope"},
             "b": {"type": "agent", "model": "m", "prompt": "p", "tools": ["strict", "gone"]},
             "c": {"type": "loop", "for_each": "[1]", "do": {"type": "tool", "tool": "x"}}}
    assert [p for p, _ in _paths(nodes)] == ["nodes.a.tool", "nodes.b.tools[1]",
                                              "nodes.c.do.tool"]
    assert _paths(nodes, allow_missing=True) == []


def test_allow_missing_still_checks_the_tools_that_exist() -> None:
    nodes = {"a": {"type": "tool", "tool": "strict", "input": {}}}
    assert [p for p, _ in _paths(nodes, allow_missing=True)] == ["nodes.a.input"]
