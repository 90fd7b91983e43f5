"""Validation reports every error, each with its path, in one pass."""

from __future__ import annotations

from typing import Any

import pytest
from flowlog.aggregates.definition import load_definition, parse_definition, validate_definition
from flowlog.aggregates.errors import DefinitionInvalid

from tests.support.runs import EXAMPLES

pytestmark = pytest.mark.unit


def paths(raw: Any) -> dict[str, str]:
    spec, issues = validate_definition(raw)
    assert spec is None
    return {i.path: i.message for i in issues}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_examples_are_valid(path: Any) -> None:
    assert load_definition(path).nodes


def test_every_kind_of_error_in_one_pass() -> None:
    raw = {
        "id": "bad",
        "secrets": ["DECLARED"],
        "triggers": [{"type": "schedule", "cron": "61 * * * *", "timezone": "Mars/Olympus"}],
        "nodes": {
            "summarize": {"type": "agent", "needs": ["fetch"], "model": 3, "prompt": "{{ x"},
            "a": {"type": "transform", "needs": ["b"], "output": "1 +"},
            "b": {"type": "tool", "tool": "t", "needs": ["a"]},
            "c": {"type": "tool", "tool": "t", "needs": ["b"]},
            "d": {"type": "webhook", "url": "https://x",
                  "headers": {"Authorization": "${secret:MISSING}"}},
            "e": {"type": "tool", "tool": "t", "retry": {"max_attempts": "three"},
                  "timeout": "soon", "input": {"v": "nodes.c.output"}},
            "f": {"type": "teleport"},
        },
    }  # fmt: skip
    found = paths(raw)
    assert found["nodes.summarize.needs[0]"] == "unknown node"
    assert found["nodes.summarize.model"].startswith("wrong type")
    assert found["nodes.summarize.prompt"].startswith("bad template")
    assert "cycle" in found["nodes.a.needs"] or "cycle" in found["nodes.b.needs"]
    assert found["nodes.c"].startswith("unreachable")
    assert found["nodes.a.output"].startswith("bad expression")
    assert found["nodes.e.input.v"] == "bad expression: `c` is not upstream of `e`"
    assert found["triggers[0].cron"] == "bad cron expression"
    assert found["triggers[0].timezone"] == "unknown timezone"
    assert found["nodes.d.headers.Authorization"] == "missing secret reference `MISSING`"
    assert found["nodes.e.retry.max_attempts"].startswith("wrong type")
    assert found["nodes.e.timeout"] == "bad duration"
    assert found["nodes.f.type"] == "unknown node type"


def test_issue_says_value_and_fix() -> None:
    _, issues = validate_definition({"id": "x", "nodes": {
        "a": {"type": "tool", "tool": "t"},
        "b": {"type": "tool", "tool": "t", "needs": ["aa"]}}})  # fmt: skip
    (issue,) = issues
    assert issue.value == "aa" and "did you mean `a`" in issue.fix
    assert issue.render() == "nodes.b.needs[0]: unknown node (got 'aa') — fix: did you mean `a`?"


def test_expressions_checked_against_inputs_and_functions() -> None:
    found = paths({"id": "x", "inputs": {"n": "integer"}, "nodes": {
        "a": {"type": "transform", "output": "inputs.m + 1"},
        "b": {"type": "transform", "output": "frobnicate(inputs.n)"},
        "c": {"type": "transform", "output": "item"}}})  # fmt: skip
    assert found["nodes.a.output"] == "bad expression: `inputs.m` is not a declared input"
    assert found["nodes.b.output"] == "bad expression: unknown function `frobnicate`"
    assert found["nodes.c.output"] == "bad expression: unknown variable `item`"


def test_node_type_rules() -> None:
    found = paths({"id": "x", "nodes": {
        "a": {"type": "tool", "tool": "t"},
        "j": {"type": "parallel", "needs": ["a"], "join": "n_of_m"},
        "c": {"type": "condition", "needs": ["a"], "if": "true", "then": ["z", "a"]},
        "l": {"type": "loop", "while": "true", "do": {"type": "delay", "duration": "1s"}},
        "d": {"type": "delay"}}})  # fmt: skip
    assert "at least two" in found["nodes.j.needs"]
    assert found["nodes.j.n"] == "required when join is n_of_m"
    assert found["nodes.c.then[0]"] == "unknown node"
    assert found["nodes.c.then[1]"] == "branch target does not need `c`"
    assert found["nodes.l.max_iterations"] == "required with while"
    assert found["nodes.l.do.type"] == "this node type cannot be a loop body"
    assert "exactly one of" in found["nodes.d"]


def test_parse_definition_raises_with_all_issues() -> None:
    with pytest.raises(DefinitionInvalid) as err:
        parse_definition({"nodes": {"a": {"type": "tool"}}, "extra": 1})
    assert {i.path for i in err.value.issues} == {"id", "extra", "nodes.a.tool"}
