"""loop: `for_each` over a CEL list with `max_concurrency`, or `while` a CEL condition holds,
bounded by `max_iterations`.

Each iteration is `LoopIterationStarted` then, for a side-effect body, a task under the id
`loop[index]` with the body's retry and failure policy; a transform body completes at once.
`LoopIterationCompleted` records each output; the loop succeeds with the outputs in index
order. The for_each list is re-evaluated when needed (its inputs are finished nodes, so the
value cannot change) rather than stored in the state. Body expressions see `item`, `index`
and `iteration` (`index`, `last`, `outputs`; `loop` is reserved in CEL).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowlog.aggregates.definition.compiled import CompiledNode, iteration_id
from flowlog.aggregates.errors import ExpressionError
from flowlog.aggregates.execution import events as ev
from flowlog.aggregates.execution.jsonvalue import error_dict
from flowlog.aggregates.execution.nodes import transform
from flowlog.aggregates.execution.state import LoopRun

if TYPE_CHECKING:
    from flowlog.aggregates.execution.decision import Decision, NodeVars

_EMPTY = LoopRun()


def start(decision: Decision, node_id: str, cnode: CompiledNode) -> None:
    pump(decision, node_id, cnode)


def _items(decision: Decision, cnode: CompiledNode) -> list[Any]:
    items = decision.evaluate(cnode.exprs["for_each"])
    if not isinstance(items, list):
        raise ExpressionError(cnode.exprs["for_each"].source, f"expected a list, got {items!r}")
    return items


def _loop_var(lr: LoopRun, index: int) -> dict[str, Any]:
    outs = [lr.outputs[i] for i in sorted(lr.outputs)]
    return {"index": index, "last": outs[-1] if outs else None, "outputs": outs}


def iteration_vars(decision: Decision, loop_id: str, cnode: CompiledNode, index: int) -> NodeVars:
    lr = decision.work.loops.get(loop_id, _EMPTY)
    item = _items(decision, cnode)[index] if "for_each" in cnode.exprs else None
    return {"item": item, "index": index, "iteration": _loop_var(lr, index)}


def pump(decision: Decision, loop_id: str, cnode: CompiledNode) -> None:
    """Start iterations while there is room; finish the loop when nothing is left."""
    cfg = cnode.spec.config
    body = cnode.body
    assert body is not None
    try:
        items = _items(decision, cnode) if "for_each" in cnode.exprs else None
        while decision.work.phase == "active":
            run = decision.work.nodes.get(loop_id)
            if run is not None and run.status != "running":
                return None  # finished by a nested pump (an iteration that ended at once)
            lr = decision.work.loops.get(loop_id, _EMPTY)
            index = lr.next_index
            if items is not None:
                more = index < len(items)
                if not more and not lr.active:
                    return _finish(decision, loop_id, lr)
                if not more or len(lr.active) >= int(cfg.get("max_concurrency", 1)):
                    return None
                item = items[index]
            else:
                if lr.active:
                    return None
                loop_var = _loop_var(lr, index)
                if decision.evaluate(cnode.exprs["while"], {"iteration": loop_var}) is not True:
                    return _finish(decision, loop_id, lr)
                if index >= int(cfg["max_iterations"]):
                    message = f"still true after max_iterations={cfg['max_iterations']}"
                    error = error_dict("LoopBoundExceeded", message, False)
                    return decision.fail_pure(loop_id, cnode, error)
                item = None
            decision.emit(ev.LoopIterationStarted, node_id=loop_id, index=index, item=item)
            iter_id = iteration_id(loop_id, index)
            if body.spec.type == "transform":
                lr = decision.work.loops[loop_id]
                extra = {"item": item, "index": index, "iteration": _loop_var(lr, index)}
                output = transform.evaluate(decision, body, extra)
                decision.emit(ev.LoopIterationCompleted, node_id=loop_id, index=index,
                              output=output)  # fmt: skip
            else:
                decision.begin_attempt(iter_id, body, 1)
    except ExpressionError as exc:
        decision.fail_pure(loop_id, cnode, error_dict("ExpressionError", str(exc), False))
    return None


def _finish(decision: Decision, loop_id: str, lr: LoopRun) -> None:
    outputs = [lr.outputs[i] for i in sorted(lr.outputs)]
    decision.emit(ev.NodeSucceeded, node_id=loop_id, attempt=1, output=outputs)
    decision.node_finished(loop_id)
