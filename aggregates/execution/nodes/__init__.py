"""One module per node type; `start_node` runs a node once its needs are met."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from flowlog.aggregates.definition.compiled import CompiledNode
from flowlog.aggregates.execution.nodes import (
    condition,
    delay,
    loop,
    parallel,
    side_effect,
    transform,
    wait,
)

if TYPE_CHECKING:
    from flowlog.aggregates.execution.decision import Decision

Starter = Callable[["Decision", str, CompiledNode], None]

STARTERS: dict[str, Starter] = {
    "agent": side_effect.start,
    "tool": side_effect.start,
    "webhook": side_effect.start,
    "subworkflow": side_effect.start,
    "wait": wait.start,
    "transform": transform.start,
    "condition": condition.start,
    "loop": loop.start,
    "parallel": parallel.check_join,
    "delay": delay.start,
}


def start_node(decision: Decision, node_id: str, cnode: CompiledNode) -> None:
    STARTERS[cnode.spec.type](decision, node_id, cnode)
