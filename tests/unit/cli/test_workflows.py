"""`flowlog workflows validate FILE`."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowlog.cli import app
from tests.support.runs import EXAMPLES

pytestmark = pytest.mark.unit


def test_valid_file_exits_0_with_summary() -> None:
    path = str(EXAMPLES / "support-triage.yaml")
    # its agent's tools come from a plugin: this test is about the summary
    result = CliRunner().invoke(app, ["workflows", "validate", path, "--allow-missing-tools"])
    assert result.exit_code == 0, result.output
    assert "nodes: 7" in result.output and "triggers: 2 (webhook, manual)" in result.output


def test_invalid_file_prints_every_error_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"id": "b", "nodes": {"a": {"type": "tool", "needs": ["zz"]}, '
                   '"b": {"type": "transform", "output": "1 +"}}}')  # fmt: skip
    result = CliRunner().invoke(app, ["workflows", "validate", str(bad)])
    assert result.exit_code == 1
    assert "nodes.a.tool: required field is missing" in result.output
    assert "nodes.a.needs[0]: unknown node (got 'zz')" in result.output
    assert "nodes.b.output: bad expression" in result.output


def test_unparseable_file_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: [unclosed\n")
    assert CliRunner().invoke(app, ["workflows", "validate", str(bad)]).exit_code == 1


def test_tool_input_without_a_required_field_names_the_path_and_the_fix(
        tmp_path: Path) -> None:
    bad = tmp_path / "echo.yaml"
    bad.write_text("id: e\nnodes:\n  say:\n    type: tool\n    tool: echo\n"
                   "    input: {text: '\"hi\"'}\n")
    result = CliRunner().invoke(app, ["workflows", "validate", str(bad)])
    assert result.exit_code == 1, result.output
    assert "nodes.say.input: lacks the field(s) tool 'echo' requires: message" in result.output
    assert "fix: add message: <expression> under nodes.say.input" in result.output


def test_unknown_tool_is_refused_unless_allowed(tmp_path: Path) -> None:
    bad = tmp_path / "missing.yaml"
    bad.write_text("id: m\nnodes:\n  a:\n    type: tool\n    tool: crm.lookup\n")
    result = CliRunner().invoke(app, ["workflows", "validate", str(bad)])
    assert result.exit_code == 1
    assert "nodes.a.tool: names a tool no installed plugin provides (got 'crm.lookup')" in (
        result.output)
    assert "--allow-missing-tools" in result.output
    allowed = CliRunner().invoke(app, ["workflows", "validate", str(bad),
                                       "--allow-missing-tools"])
    assert allowed.exit_code == 0, allowed.output
