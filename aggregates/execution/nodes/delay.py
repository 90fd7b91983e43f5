"""delay: waits for a `delay` timer (`duration`, or `until` a CEL timestamp); output null
(so a join over a delay does not depend on when it ran)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from flowlog.aggregates.definition.compiled import CompiledNode
from flowlog.aggregates.definition.model import parse_duration_ms
from flowlog.aggregates.errors import ExpressionError
from flowlog.aggregates.execution.jsonvalue import error_dict

if TYPE_CHECKING:
    from flowlog.aggregates.execution.decision import Decision


def start(decision: Decision, node_id: str, cnode: CompiledNode) -> None:
    cfg = cnode.spec.config
    if "duration" in cfg:
        ms = parse_duration_ms(cfg["duration"]) or 0
    else:
        try:
            value = decision.evaluate(cnode.exprs["until"])
            due = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            if due.tzinfo is None:
                raise ValueError("the timestamp has no timezone")
        except (ExpressionError, ValueError) as exc:
            decision.fail_pure(node_id, cnode, error_dict("ExpressionError", str(exc), False))
            return
        ms = max(0, int((due - decision.now).total_seconds() * 1000))
    if ms == 0:
        decision.succeed(node_id, 1, None)
        return
    decision.set_timer("delay", node_id, 1, ms)
