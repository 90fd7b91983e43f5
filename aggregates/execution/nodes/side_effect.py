"""agent, tool, webhook and subworkflow: work done by an executor, one task per attempt.

The node becomes `NodeScheduled` (the streams layer issues a node task with task key
`execution_id:node_id:attempt`, renders its templates with `render_task_config`) and,
with a timeout, a `node_timeout` timer. A sub-workflow task starts the child execution and
reports its outcome as this node's result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowlog.aggregates.definition.compiled import CompiledNode

if TYPE_CHECKING:
    from flowlog.aggregates.execution.decision import Decision


def start(decision: Decision, node_id: str, cnode: CompiledNode) -> None:
    decision.begin_attempt(node_id, cnode, 1)
