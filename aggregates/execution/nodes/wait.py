"""wait (wait-for-event): waits for an `EventReceived` input named `event`.

Starts with `NodeStarted` (status waiting) and, with a timeout, a `node_timeout` timer.
An optional `match` expression over `event` (the payload) selects which event counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowlog.aggregates.definition.compiled import CompiledNode
from flowlog.aggregates.errors import ExpressionError

if TYPE_CHECKING:
    from flowlog.aggregates.execution.decision import Decision


def start(decision: Decision, node_id: str, cnode: CompiledNode) -> None:
    decision.begin_attempt(node_id, cnode, 1)


def matches(decision: Decision, cnode: CompiledNode, payload: Any) -> bool:
    expr = cnode.exprs.get("match")
    if expr is None:
        return True
    try:
        return decision.evaluate(expr, {"event": payload}) is True
    except ExpressionError:
        return False
