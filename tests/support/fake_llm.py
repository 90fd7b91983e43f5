"""A real HTTP server speaking the OpenAI chat-completions and Anthropic Messages APIs.

Scripted: each model call takes the next `Turn` (tool calls, a final text, an HTTP
failure or a hang); when the script is used up it answers the text "done". Every request
is recorded (path, headers, JSON body) so tests can assert the Idempotency-Key and the
tools payload. Use it directly or through the `fake_llm` fixture (tests/support/fixtures):

    with FakeLLMServer() as llm:
        llm.script(Turn.tools(("echo", {"message": "hi"})), Turn.final("all done"))
        settings = Settings(openai_base_url=llm.openai_base_url,
                            anthropic_base_url=llm.anthropic_base_url)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.support.server import BackgroundServer


@dataclass
class Turn:
    """One scripted model answer."""

    text: str = ""
    tool_calls: list[tuple[str, Any]] = field(default_factory=list)  # (name, arguments)
    status: int = 200  # != 200: answer this HTTP error instead
    hang_s: float = 0.0  # wait this long before answering
    input_tokens: int = 11
    output_tokens: int = 7
    raw_arguments: str | None = None  # OpenAI only: send these argument bytes verbatim

    @classmethod
    def final(cls, text: str, **kw: Any) -> Turn:
        return cls(text=text, **kw)

    @classmethod
    def tools(cls, *calls: tuple[str, Any], text: str = "", **kw: Any) -> Turn:
        return cls(text=text, tool_calls=list(calls), **kw)

    @classmethod
    def error(cls, status: int) -> Turn:
        return cls(status=status)

    @classmethod
    def hang(cls, seconds: float) -> Turn:
        return cls(text="too late", hang_s=seconds)


@dataclass
class Recorded:
    api: str  # "openai" | "anthropic"
    path: str
    headers: dict[str, str]
    body: Any


class FakeLLMServer:
    def __init__(self, *, api_key: str | None = None) -> None:
        self.api_key = api_key  # when set, requests must carry it (401 otherwise)
        self.requests: list[Recorded] = []
        self._turns: deque[Turn] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server = BackgroundServer(self._app())

    # --- control ---------------------------------------------------------------------
    def script(self, *turns: Turn) -> FakeLLMServer:
        """Replace the script (and forget recorded requests)."""
        with self._lock:
            self._turns = deque(turns)
            self.requests.clear()
        return self

    def reset(self) -> None:
        self.script()
        self.api_key = None

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    def start(self) -> FakeLLMServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the app ---------------------------------------------------------------------
    def _next(self) -> Turn:
        with self._lock:
            return self._turns.popleft() if self._turns else Turn.final("done")

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def openai(request: Request) -> JSONResponse:
            body = await request.json()
            self._record("openai", request, body)
            if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
                return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
            turn = self._next()
            if turn.hang_s:
                await asyncio.sleep(turn.hang_s)
            if turn.status != 200:
                return JSONResponse({"error": {"message": f"scripted {turn.status}"}},
                                    status_code=turn.status)  # fmt: skip
            message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
            if turn.tool_calls:
                message["tool_calls"] = [
                    {"id": f"call_{next(self._ids)}", "type": "function",
                     "function": {"name": name,
                                  "arguments": turn.raw_arguments
                                  if turn.raw_arguments is not None else json.dumps(args)}}
                    for name, args in turn.tool_calls
                ]  # fmt: skip
            return JSONResponse({
                "id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion",
                "model": body.get("model"),
                "choices": [{"index": 0, "message": message,
                             "finish_reason": "tool_calls" if turn.tool_calls else "stop"}],
                "usage": {"prompt_tokens": turn.input_tokens,
                          "completion_tokens": turn.output_tokens,
                          "total_tokens": turn.input_tokens + turn.output_tokens},
            })  # fmt: skip

        @app.post("/v1/messages")
        async def anthropic(request: Request) -> JSONResponse:
            body = await request.json()
            self._record("anthropic", request, body)
            if self.api_key and request.headers.get("x-api-key") != self.api_key:
                return JSONResponse({"type": "error", "error": {"type": "authentication_error",
                                     "message": "bad key"}}, status_code=401)  # fmt: skip
            if not request.headers.get("anthropic-version") or "max_tokens" not in body:
                return JSONResponse({"type": "error", "error": {"type": "invalid_request_error",
                                     "message": "anthropic-version and max_tokens required"}},
                                    status_code=400)  # fmt: skip
            turn = self._next()
            if turn.hang_s:
                await asyncio.sleep(turn.hang_s)
            if turn.status != 200:
                return JSONResponse({"type": "error", "error": {"type": "api_error",
                                     "message": f"scripted {turn.status}"}},
                                    status_code=turn.status)  # fmt: skip
            content: list[dict[str, Any]] = []
            if turn.text:
                content.append({"type": "text", "text": turn.text})
            for name, args in turn.tool_calls:
                content.append({"type": "tool_use", "id": f"toolu_{next(self._ids)}",
                                "name": name, "input": args})  # fmt: skip
            return JSONResponse({
                "id": f"msg_{next(self._ids)}", "type": "message", "role": "assistant",
                "model": body.get("model"), "content": content,
                "stop_reason": "tool_use" if turn.tool_calls else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": turn.input_tokens,
                          "output_tokens": turn.output_tokens},
            })  # fmt: skip

        return app

    def _record(self, api: str, request: Request, body: Any) -> None:
        with self._lock:
            headers = {k.lower(): v for k, v in request.headers.items()}
            self.requests.append(Recorded(api, request.url.path, headers, body))
