"""Error mapping: retryability by type and by HTTP status; input errors that say the fix."""

from __future__ import annotations

import httpx
import pytest
from flowlog.streams.executors import errors as e
from flowlog.streams.executors.http import status_error, target_of
from flowlog.streams.executors.tools.registry import ToolRegistry, validate_input
from pydantic import BaseModel, ConfigDict


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (502, True), (503, True), (529, True), (429, True), (408, True),
     (400, False), (401, False), (403, False), (404, False), (409, False), (422, False)],
)  # fmt: skip
def test_http_status_retryability(status: int, retryable: bool) -> None:
    assert e.is_retryable_status(status) is retryable
    request = httpx.Request("POST", "https://api.example.com/x?y=1")
    err = status_error("post", "https://api.example.com", httpx.Response(status, text="nope",
                                                                         request=request))
    assert err.to_dict() == {"type": "http_error", "retryable": retryable,
                             "message": err.message}  # fmt: skip
    assert str(status) in err.message and "nope" in err.message and "/x" in err.message


def test_types_carry_retryability() -> None:
    assert e.TaskTimeout("t").to_dict()["retryable"] is True
    assert e.ConnectionFailed("c").is_retryable
    assert e.CircuitOpen("o").to_dict()["type"] == "circuit_open"
    assert not e.InvalidInput("i").is_retryable
    assert not e.ToolNotFound("x").is_retryable
    assert not e.Unsupported("u").is_retryable
    assert e.ToolFailed("f", retryable=False).to_dict()["retryable"] is False


def test_target_of_needs_an_absolute_url() -> None:
    assert target_of("https://h.example:8443/a/b") == "https://h.example:8443"
    with pytest.raises(e.InvalidConfig, match="not absolute"):
        target_of("/relative")


class _Tool:
    name = "t"
    description = "d"

    class Input(BaseModel):
        model_config = ConfigDict(extra="forbid")
        count: int
        label: str = ""

    async def run(self, input: object, ctx: object) -> object:
        return None


def test_validation_error_names_field_value_and_fix() -> None:
    tools = ToolRegistry(entry_points=False)
    tool = tools.register(_Tool)
    with pytest.raises(e.InvalidInput) as err:
        validate_input(tool, {"count": "many"})
    msg = err.value.message
    assert "'count'" in msg and "'many'" in msg and "fix:" in msg
    assert not err.value.is_retryable
    with pytest.raises(e.InvalidInput, match="'count' is missing; fix: add 'count'"):
        validate_input(tool, {})
    with pytest.raises(e.InvalidInput, match="'colour' is not an input of this tool"):
        validate_input(tool, {"count": 1, "colour": "red"})
    assert validate_input(tool, {"count": "3"}).count == 3  # type: ignore[attr-defined]


def test_registry_rejects_what_is_not_a_tool() -> None:
    tools = ToolRegistry(entry_points=False)

    class NoInput:
        name = "x"
        description = "d"

        async def run(self, input: object, ctx: object) -> object:
            return None

    with pytest.raises(TypeError, match="lacks \\['Input'\\]"):
        tools.register(NoInput)
    with pytest.raises(e.ToolNotFound, match="known: none"):
        tools.get("x")
