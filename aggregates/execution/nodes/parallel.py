"""parallel: joins the branches listed in `needs` by `all`, `any` or `n_of_m`.

Fan-out is the DAG itself (several nodes needing one node). The join is checked each time
a branch finishes: it succeeds as soon as its rule is met (output: the outputs of the
branches that succeeded so far, by node id), fails once the rule can no longer be met, and
is skipped when every branch was skipped. Branches still running after an early `any` or
`n_of_m` join go on; their results are recorded as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowlog.aggregates.definition.compiled import CompiledNode
from flowlog.aggregates.execution.jsonvalue import error_dict
from flowlog.aggregates.execution.state import TERMINAL

if TYPE_CHECKING:
    from flowlog.aggregates.execution.decision import Decision


def check_join(decision: Decision, node_id: str, cnode: CompiledNode) -> None:
    if node_id in decision.work.nodes:
        return
    needs = cnode.spec.needs
    mode = cnode.spec.config.get("join", "all")
    nodes = decision.work.nodes
    succeeded: dict[str, object] = {}
    finished = skipped = 0
    for need in needs:
        run = nodes.get(need)
        if run is None or run.status not in TERMINAL:
            continue
        finished += 1
        if run.status == "succeeded":
            succeeded[need] = run.output
        elif run.status == "skipped":
            skipped += 1
    m = len(needs)
    want = m if mode == "all" else 1 if mode == "any" else int(cnode.spec.config.get("n", m))
    if mode == "all":
        if finished < m:
            return
        if skipped == m:
            decision.skip(node_id, "all branches skipped")
        else:
            decision.succeed(node_id, 1, succeeded)
        return
    if len(succeeded) >= want:
        decision.succeed(node_id, 1, succeeded)
    elif len(succeeded) + (m - finished) < want:
        if skipped == m:
            decision.skip(node_id, "all branches skipped")
        else:
            message = f"join {mode} needs {want} successful branches, only {len(succeeded)} can"
            decision.fail_pure(node_id, cnode, error_dict("JoinFailed", message, False))
