"""`agent` nodes (being written)."""

from __future__ import annotations

from typing import Any

from flowlog.streams.executors.errors import Unsupported
from flowlog.streams.executors.nodes.base import NodeContext


async def run_agent_node(ctx: NodeContext) -> Any:
    raise Unsupported("agent nodes are not implemented yet")
