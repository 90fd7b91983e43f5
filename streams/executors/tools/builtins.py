"""Built-in tools (declared as `flowlog.tools` entry points in pyproject.toml)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from flowlog.streams.executors.http import response_body
from flowlog.streams.executors.tools.base import BaseTool, ToolContext
from pydantic import BaseModel, ConfigDict, Field, model_validator


class _AnyInput(BaseModel):
    model_config = ConfigDict(extra="allow")


class Noop(BaseTool):
    """Returns its input unchanged; the engine benchmark's tool, so it does nothing else."""

    name = "noop"
    description = "Return the input unchanged."
    Input = _AnyInput

    async def run(self, input: Any, ctx: ToolContext) -> Any:
        return input.model_extra


class Echo(BaseTool):
    name = "echo"
    description = "Return the given message (and anything else given) unchanged."

    class Input(BaseModel):
        model_config = ConfigDict(extra="allow")
        message: str = Field(description="Text to return.")

    async def run(self, input: Any, ctx: ToolContext) -> Any:
        return input.model_dump()


class Sleep(BaseTool):
    name = "sleep"
    description = "Wait the given number of seconds, then return them."

    class Input(BaseModel):
        model_config = ConfigDict(extra="forbid")
        seconds: float = Field(ge=0, le=3600, description="Seconds to wait.")

    async def run(self, input: Any, ctx: ToolContext) -> Any:
        await asyncio.sleep(input.seconds)
        return {"slept": input.seconds}


class HttpRequest(BaseTool):
    name = "http_request"
    description = (
        "Make an HTTP request. Returns status, headers, body (text) and json (parsed body "
        "when the answer is JSON)."
    )

    class Input(BaseModel):
        model_config = ConfigDict(extra="forbid")
        method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
        url: str = Field(pattern=r"^https?://", description="Absolute http(s) URL.")
        headers: dict[str, str] = Field(default_factory=dict)
        json_body: Any = Field(None, alias="json", description="JSON request body.")
        body: str | None = Field(None, description="Raw request body (instead of json).")
        timeout: float | None = Field(None, gt=0, description="Seconds; capped by the task's.")
        raise_for_status: bool = Field(
            True, description="Fail the call on a non-2xx answer (false: return it)."
        )

        @model_validator(mode="after")
        def _one_body(self) -> HttpRequest.Input:
            if self.json_body is not None and self.body is not None:
                raise ValueError("give either json or body, not both")
            return self

    async def run(self, input: Any, ctx: ToolContext) -> Any:
        timeout = ctx.remaining_s()
        if input.timeout is not None:
            timeout = min(timeout, input.timeout)
        response = await ctx.http.request(
            input.method, input.url,
            idempotency_key=ctx.idempotency_key, timeout_s=timeout,
            headers=input.headers, json=input.json_body, content=input.body,
            raise_for_status=input.raise_for_status,
        )  # fmt: skip
        return {
            "status": response.status_code,
            "headers": dict(response.headers),
            **response_body(response),
        }
