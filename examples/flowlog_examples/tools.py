"""Tools the example workflows name (entry points of this plugin, see pyproject.toml).

Each is a demo stand-in with a typed input (so `flowlog workflows apply` can check the
nodes that call it) and a deterministic answer: the same input gives the same output,
as a retried task must.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

from flowlog.streams.executors.errors import NonRetryable
from flowlog.streams.executors.tools.base import BaseTool, ToolContext
from pydantic import BaseModel, ConfigDict


def _price(symbol: str, provider: str) -> float:
    digest = hashlib.sha256(f"{provider}:{symbol}".encode()).digest()
    return round(10 + int.from_bytes(digest[:2], "big") / 65535 * 2, 2)  # 10.00 .. 12.00


class _Demo(BaseTool):
    description: ClassVar[str] = "demo stand-in (examples/flowlog_examples)"


class CrmEnrich(_Demo):
    class Input(BaseModel):
        record: Any
        position: int = 0

    name = "crm.enrich"
    description = "Demo CRM lookup: returns the record with a score."

    async def run(self, input: Input, ctx: ToolContext) -> Any:
        score = len(str(input.record)) % 5 + 1
        return {"record": input.record, "position": input.position, "score": score}


class SendQuote(_Demo):
    class Input(BaseModel):
        quote_id: str

    name = "mail.send_quote"
    description = "Demo mailer: pretends to send the quote (nothing leaves the machine)."

    async def run(self, input: Input, ctx: ToolContext) -> Any:
        return {"sent": True, "quote_id": input.quote_id, "message_id": f"demo-{ctx.task_key}"}


class CreateOrder(_Demo):
    class Input(BaseModel):
        quote_id: str

    name = "orders.create"
    description = "Demo order system: creates order order-<quote_id>."

    async def run(self, input: Input, ctx: ToolContext) -> Any:
        return {"order": f"order-{input.quote_id}"}


class _Quote(BaseModel):
    symbol: str


class ProviderA(_Demo):
    Input = _Quote
    name = "quotes.provider_a"
    description = "Demo quote provider A (prices made up from the symbol)."

    async def run(self, input: _Quote, ctx: ToolContext) -> Any:
        return {"provider": "a", "symbol": input.symbol, "price": _price(input.symbol, "a")}


class ProviderB(_Demo):
    Input = _Quote
    name = "quotes.provider_b"
    description = "Demo quote provider B (prices made up from the symbol)."

    async def run(self, input: _Quote, ctx: ToolContext) -> Any:
        return {"provider": "b", "symbol": input.symbol, "price": _price(input.symbol, "b")}


class ProviderC(_Demo):
    Input = _Quote
    name = "quotes.provider_c"
    description = ("Demo quote provider C: always down (NonRetryable), to show a join that "
                   "needs two of three answers.")

    async def run(self, input: _Quote, ctx: ToolContext) -> Any:
        raise NonRetryable("demo provider c is down (on purpose: the join needs 2 of 3)")


class RefundEligibility(_Demo):
    class Input(BaseModel):
        customer: str | None = None

    name = "billing.refund_eligibility"
    description = "Demo billing: every known customer may get a refund."

    async def run(self, input: Input, ctx: ToolContext) -> Any:
        return {"eligible": input.customer is not None, "customer": input.customer}


class CreateIssue(_Demo):
    class Input(BaseModel):
        title: str

    name = "tracker.create_issue"
    description = "Demo issue tracker: files DEMO-<n>."

    async def run(self, input: Input, ctx: ToolContext) -> Any:
        n = int(hashlib.sha256(input.title.encode()).hexdigest()[:4], 16) % 1000
        return {"issue": f"DEMO-{n}", "title": input.title}


class MarkNotified(_Demo):
    class Input(BaseModel):
        order_id: str
        status: str | None = None

    name = "ledger.mark_notified"
    description = "Demo ledger: records that the partner was notified."

    async def run(self, input: Input, ctx: ToolContext) -> Any:
        return {"order_id": input.order_id, "notified": input.status == "succeeded"}


class LookupCustomer(_Demo):
    class Input(BaseModel):
        model_config = ConfigDict(extra="allow")
        email: str | None = None

    name = "lookup_customer"
    description = "Look a customer up by email (demo: always customer c-42 on plan pro)."

    async def run(self, input: Input, ctx: ToolContext) -> Any:
        return {"customer_id": "c-42", "plan": "pro", "email": input.email}


class SearchKb(_Demo):
    class Input(BaseModel):
        model_config = ConfigDict(extra="allow")
        query: str = ""

    name = "search_kb"
    description = "Search the knowledge base (demo: one canned article)."

    async def run(self, input: Input, ctx: ToolContext) -> Any:
        return {"articles": [{"title": "How refunds work", "url": "https://example.com/kb/1"}]}


TOOLS = [CrmEnrich, SendQuote, CreateOrder, ProviderA, ProviderB, ProviderC,
         RefundEligibility, CreateIssue, MarkNotified, LookupCustomer, SearchKb]
