"""A local DEMO server for the example workflows — canned answers, NOT a language model.

    python -m flowlog_examples.demo_server --port 8790

* ``POST /v1/chat/completions`` (OpenAI-compatible) and ``POST /v1/messages``
  (Anthropic-compatible): a rule-based stand-in "model". Offered tools and no tool result
  yet: it calls the first tool. Asked to classify: it answers JSON
  ``{"category": billing|bug|question, "customer_id": "c-42"}`` from keywords. Otherwise a
  short reply starting with ``(demo model)``. Token counts are word counts.
* ``POST /demo/helpdesk/api/tickets/{id}/replies`` and ``POST /demo/partner/orders``: the
  outside systems of ``support-triage`` and ``webhook-retry-deadletter``; they accept and
  log what they receive.

`make run` starts it and, when no ``FLOWLOG_OPENAI_API_KEY`` / ``FLOWLOG_ANTHROPIC_API_KEY``
is set, points the agents at it (and says so). With keys set, agents use the real APIs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

MODEL_LABEL = "flowlog-demo-model (canned answers, not an LLM)"
DEMO_PORT = 8790
log = logging.getLogger("flowlog_examples.demo_server")
_ids = itertools.count(1)


def classify(text: str) -> str:
    low = text.lower()
    if any(w in low for w in ("refund", "charge", "invoice", "billing", "payment", "price")):
        return "billing"
    if any(w in low for w in ("error", "bug", "crash", "broken", "fails", "exception")):
        return "bug"
    return "question"


def answer(prompt: str, tools: list[str], tool_results: int) -> tuple[str, list[tuple[str, Any]]]:
    """The demo model's turn: (text, tool calls)."""
    if tools and tool_results == 0:
        first = tools[0]
        args = {"email": "customer@example.com"} if first == "lookup_customer" else {
            "query": prompt[:100]}
        return "", [(first, args)]
    if "classify" in prompt.lower():
        # judge the ticket, not the instruction (which names every category)
        ticket = prompt.split("Subject:", 1)[1] if "Subject:" in prompt else prompt
        return json.dumps({"category": classify(ticket), "customer_id": "c-42"}), []
    return ("(demo model) Thank you for reaching out; we are on it. "
            f"(Facts seen: {prompt[-160:].strip()})"), []


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return ""


def app() -> FastAPI:
    api = FastAPI(title="flowlog DEMO server (not an LLM)")

    @api.get("/")
    async def index() -> PlainTextResponse:
        return PlainTextResponse(__doc__ or "")

    @api.post("/v1/chat/completions")
    async def openai(request: Request) -> JSONResponse:
        body = await request.json()
        messages = body.get("messages") or []
        prompt = " ".join(_text(m.get("content")) for m in messages if m.get("role") == "user")
        tools = [t["function"]["name"] for t in body.get("tools") or [] if "function" in t]
        results = sum(1 for m in messages if m.get("role") == "tool")
        text, calls = answer(prompt, tools, results)
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = [
                {"id": f"call_{next(_ids)}", "type": "function",
                 "function": {"name": n, "arguments": json.dumps(a)}} for n, a in calls]
        used_in, used_out = len(prompt.split()), len(text.split()) + 5 * len(calls)
        return JSONResponse({
            "id": f"chatcmpl-demo-{next(_ids)}", "object": "chat.completion",
            "model": MODEL_LABEL,
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": {"prompt_tokens": used_in, "completion_tokens": used_out,
                      "total_tokens": used_in + used_out},
        })

    @api.post("/v1/messages")
    async def anthropic(request: Request) -> JSONResponse:
        body = await request.json()
        messages = body.get("messages") or []
        prompt = " ".join(_text(m.get("content")) for m in messages if m.get("role") == "user")
        tools = [t["name"] for t in body.get("tools") or [] if "name" in t]
        results = sum(1 for m in messages if isinstance(m.get("content"), list)
                      for c in m["content"] if isinstance(c, dict)
                      and c.get("type") == "tool_result")
        text, calls = answer(prompt, tools, results)
        content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        content += [{"type": "tool_use", "id": f"toolu_demo_{next(_ids)}", "name": n,
                     "input": a} for n, a in calls]
        return JSONResponse({
            "id": f"msg_demo_{next(_ids)}", "type": "message", "role": "assistant",
            "model": MODEL_LABEL, "content": content,
            "stop_reason": "tool_use" if calls else "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": len(prompt.split()),
                      "output_tokens": len(text.split()) + 5 * len(calls)},
        })

    @api.post("/demo/helpdesk/api/tickets/{ticket_id}/replies")
    async def helpdesk(ticket_id: str, request: Request) -> JSONResponse:
        body = await request.body()
        log.info("demo helpdesk: reply to ticket %s: %s", ticket_id, body[:200])
        return JSONResponse({"ticket": ticket_id, "posted": True}, status_code=201)

    @api.post("/demo/partner/orders")
    async def partner(request: Request) -> JSONResponse:
        body = await request.body()
        log.info("demo partner: order notification %s", body[:200])
        return JSONResponse({"received": True})

    return api


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEMO_PORT)
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s demo-server %(message)s")
    log.info("flowlog DEMO server on http://%s:%s: canned answers, NOT a language model",
             args.host, args.port)
    uvicorn.run(app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
