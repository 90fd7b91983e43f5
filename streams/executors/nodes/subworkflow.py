"""`subworkflow` nodes: starting a child execution is the streams runtime's job (it owns
Kafka); an executor reached with one reports `unsupported`, not retryable."""

from __future__ import annotations

from typing import Any

from flowlog.streams.executors.errors import Unsupported
from flowlog.streams.executors.nodes.base import NodeContext


async def run_subworkflow_node(ctx: NodeContext) -> Any:
    raise Unsupported(
        f"subworkflow nodes are not run by the HTTP executor (node {ctx.task.node_id!r}, "
        f"workflow {ctx.config.get('workflow')!r}); the streams runtime must start the child "
        f"execution itself"
    )
