"""Tools the example workflows name, as plain test plugins (settings.tool_modules)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from flowlog.streams.executors.errors import NonRetryable, Retryable
from flowlog.streams.executors.tools.base import BaseTool, ToolContext
from pydantic import BaseModel, ConfigDict


class _Any(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Tool(BaseTool):
    Input = _Any
    description = "test tool"

    async def run(self, input: Any, ctx: ToolContext) -> Any:
        path = os.environ.get("FLOWLOG_TEST_RUN_LOG")
        if path:  # fault tests count runs: one line per run, task key and idempotency key
            with open(path, "a", encoding="utf-8") as f:  # noqa: ASYNC230 (tiny append)
                f.write(f"{ctx.task_key} {ctx.idempotency_key}\n")
        return self.answer(dict(input.model_extra or {}), ctx)

    def answer(self, data: dict[str, Any], ctx: ToolContext) -> Any:
        return data


class CrmEnrich(_Tool):
    name = "crm.enrich"

    def answer(self, data: dict[str, Any], ctx: ToolContext) -> Any:
        return {"record": data.get("record"), "position": data.get("position"), "score": 1}


class SendQuote(_Tool):
    name = "mail.send_quote"


class CreateOrder(_Tool):
    name = "orders.create"

    def answer(self, data: dict[str, Any], ctx: ToolContext) -> Any:
        return {"order": f"order-{data.get('quote_id')}"}


class ProviderA(_Tool):
    name = "quotes.provider_a"

    def answer(self, data: dict[str, Any], ctx: ToolContext) -> Any:
        return {"price": 10.5}


class ProviderB(_Tool):
    name = "quotes.provider_b"

    def answer(self, data: dict[str, Any], ctx: ToolContext) -> Any:
        return {"price": 11.0}


class ProviderC(_Tool):
    name = "quotes.provider_c"

    def answer(self, data: dict[str, Any], ctx: ToolContext) -> Any:
        raise NonRetryable("provider c is down")


class RefundEligibility(_Tool):
    name = "billing.refund_eligibility"

    def answer(self, data: dict[str, Any], ctx: ToolContext) -> Any:
        return {"eligible": True, "customer": data.get("customer")}


class CreateIssue(_Tool):
    name = "tracker.create_issue"


class MarkNotified(_Tool):
    name = "ledger.mark_notified"


class LookupCustomer(_Tool):
    name = "lookup_customer"

    def answer(self, data: dict[str, Any], ctx: ToolContext) -> Any:
        return {"customer_id": "c-42", "plan": "pro"}


class SearchKb(_Tool):
    name = "search_kb"

    def answer(self, data: dict[str, Any], ctx: ToolContext) -> Any:
        return {"articles": []}


class Flaky(_Tool):
    """Fails (retryable) until attempt `succeed_on`."""

    name = "flaky"

    def answer(self, data: dict[str, Any], ctx: ToolContext) -> Any:
        if ctx.attempt < int(data.get("succeed_on", 2)):
            raise Retryable(f"attempt {ctx.attempt} fails on purpose")
        return {"attempt": ctx.attempt}


class Recorded(_Tool):
    """Every tool here appends its run to FLOWLOG_TEST_RUN_LOG when set; this one only that."""

    name = "recorded"


class Gate(BaseTool):
    """Holds until the file named by `open_when` exists: a test decides when a node ends,
    instead of guessing with a sleep how long the machine needs for the rest."""

    name = "gate"
    Input = _Any
    description = "waits for a file"

    async def run(self, input: Any, ctx: ToolContext) -> Any:
        path = Path(str((input.model_extra or {})["open_when"]))
        while not path.exists():  # noqa: ASYNC110, ASYNC240 (polling the file is the point)
            await asyncio.sleep(0.02)
        return {"opened": str(path)}


TOOLS = [Gate, CrmEnrich, SendQuote, CreateOrder, ProviderA, ProviderB, ProviderC,
         RefundEligibility, CreateIssue, MarkNotified, LookupCustomer, SearchKb, Flaky,
         Recorded]
