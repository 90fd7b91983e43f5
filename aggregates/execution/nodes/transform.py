"""transform: a pure CEL expression (or a map of them) over inputs and earlier outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowlog.aggregates.definition.compiled import CompiledNode
from flowlog.aggregates.errors import ExpressionError
from flowlog.aggregates.execution.jsonvalue import error_dict

if TYPE_CHECKING:
    from flowlog.aggregates.execution.decision import Decision, NodeVars


def evaluate(decision: Decision, cnode: CompiledNode, extra: NodeVars | None) -> Any:
    exprs = cnode.exprs
    if "output" in exprs:
        return decision.evaluate(exprs["output"], extra)
    return {key[len("output.") :]: decision.evaluate(e, extra) for key, e in exprs.items()}


def start(decision: Decision, node_id: str, cnode: CompiledNode) -> None:
    try:
        output = evaluate(decision, cnode, None)
    except ExpressionError as exc:
        decision.fail_pure(node_id, cnode, error_dict("ExpressionError", str(exc), False))
        return
    decision.succeed(node_id, 1, output)
