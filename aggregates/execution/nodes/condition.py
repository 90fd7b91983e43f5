"""condition: `if`/`then`/`else` or `switch`/`cases`/`default`.

Emits `BranchDecided` (which completes the node) and skips the targets of the branches
not taken; their dependents are skipped in turn when all their needs are skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowlog.aggregates.definition.compiled import CompiledNode
from flowlog.aggregates.errors import ExpressionError
from flowlog.aggregates.execution import events as ev
from flowlog.aggregates.execution.jsonvalue import error_dict

if TYPE_CHECKING:
    from flowlog.aggregates.execution.decision import Decision


def start(decision: Decision, node_id: str, cnode: CompiledNode) -> None:
    try:
        if "if" in cnode.exprs:
            value = decision.evaluate(cnode.exprs["if"])
            if not isinstance(value, bool):
                raise ExpressionError(cnode.exprs["if"].source, f"expected a bool, got {value!r}")
            branch = "then" if value else "else"
        else:
            value = decision.evaluate(cnode.exprs["switch"])
            key = value if isinstance(value, str) else _case_key(value)
            branch = key if key in cnode.branches and key != "default" else "default"
    except ExpressionError as exc:
        decision.fail_pure(node_id, cnode, error_dict("ExpressionError", str(exc), False))
        return
    taken = cnode.branches.get(branch, ())
    decision.emit(ev.BranchDecided, node_id=node_id, branch=branch, targets=list(taken))
    for name, targets in cnode.branches.items():
        if name == branch:
            continue
        for target in targets:
            if target not in taken and target not in decision.work.nodes:
                decision.skip(target, f"branch {name!r} of {node_id} not taken")
    decision.node_finished(node_id)


def _case_key(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
