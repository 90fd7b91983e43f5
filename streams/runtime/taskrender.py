"""Rendering a `NodeScheduled` execution-event record into the record that follows it.

Shared by the dispatcher (`timers` role) and the processor: both turn each `NodeScheduled`
into a `NodeTaskIssued` (config rendered, secrets still as references, built by
`records.task_record`), or, when the task cannot even be issued (definition unknown, a
template that does not render), into a failed, non-retryable `NodeResultReported`.

Pure apart from its cache: no I/O, the clock is passed in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from flowlog.aggregates import records
from flowlog.aggregates.definition.compiled import CompiledDefinition, split_iteration
from flowlog.aggregates.execution.taskconfig import render_task_config
from flowlog.schemas.model import canonical_json


class TaskRenderer:
    """Renders node tasks; caches the config of nodes without templates per version."""

    def __init__(self, default_timeout_ms: int) -> None:
        self.default_timeout_ms = default_timeout_ms
        # (workflow, version, node) -> (definition, static config JSON or None, timeout)
        self._configs: dict[tuple[str, int, str], tuple[CompiledDefinition, str | None, int]] = {}

    def static_config(self, definition: CompiledDefinition, workflow_id: str, version: int,
                      node_id: str) -> tuple[str | None, int]:
        """(config JSON when the node has no templates, else None; timeout_ms), cached.

        Without templates `render_task_config` depends only on the definition version and
        the node (an iteration's index only reaches templates), so it is rendered once.
        """
        base, _ = split_iteration(node_id)
        key = (workflow_id, version, base)
        cached = self._configs.get(key)
        if cached is not None and cached[0] is definition:
            return cached[1], cached[2]
        cnode = definition.node(node_id)
        timeout_ms = cnode.spec.timeout_ms or self.default_timeout_ms
        text = None
        if not cnode.templates:
            text = canonical_json(render_task_config(definition, node_id, {},
                                                     execution_id=""))
        self._configs[key] = (definition, text, timeout_ms)
        return text, timeout_ms

    def render(self, scheduled: dict[str, Any], definition: CompiledDefinition | None,
               item: Any, now: datetime) -> tuple[str, dict[str, Any]]:
        """(record name, record): the `NodeTaskIssued` of a `NodeScheduled` record, or the
        failed `NodeResultReported` of a task that cannot be issued.

        ``item`` is the loop item of a loop iteration (None otherwise).
        """
        execution_id, node_id = scheduled["execution_id"], scheduled["node_id"]
        workflow_id, version = scheduled["workflow_id"], scheduled["workflow_version"]
        try:
            raw = scheduled["input"]
            node_input = orjson.loads(raw) if isinstance(raw, str) else raw
            if definition is None:
                raise LookupError(f"definition {workflow_id} v{version} unknown")
            config_text, timeout_ms = self.static_config(definition, workflow_id, version,
                                                         node_id)
            if config_text is None:
                config_text = canonical_json(render_task_config(
                    definition, node_id, node_input if isinstance(node_input, dict)
                    else {"value": node_input}, execution_id=execution_id, item=item))
        except Exception as exc:  # cannot be run: report the attempt failed, not retryable
            return "NodeResultReported", records.result_record(
                scheduled, status="failed", started_at=now, finished_at=now,
                error={"type": type(exc).__name__, "message": str(exc), "retryable": False})
        return "NodeTaskIssued", records.task_record(
            scheduled, input_json=canonical_json(node_input), config_json=config_text,
            timeout_ms=timeout_ms)
