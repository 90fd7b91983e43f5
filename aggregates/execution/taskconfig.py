"""The resolved config of a node task: templates rendered in Jinja2's sandbox.

Called by the streams layer when it turns a `NodeScheduled` into a node task. Templates
see the node's evaluated `input` (built by CEL from trigger inputs and earlier outputs),
`item`/`index` in a loop body, and `execution`. `${secret:NAME}` references are left for
the executor to resolve; secrets never enter events.
"""

from __future__ import annotations

from typing import Any

from flowlog.aggregates.definition.compiled import CompiledDefinition, split_iteration


def render_task_config(
    definition: CompiledDefinition,
    node_id: str,
    node_input: dict[str, Any],
    *,
    execution_id: str = "",
    item: Any = None,
) -> dict[str, Any]:
    """The node's config with every template rendered (raises TemplateError)."""
    cnode = definition.node(node_id)
    _, index = split_iteration(node_id)
    context = {
        "input": node_input,
        "item": item,
        "index": index,
        "execution": {
            "id": execution_id,
            "workflow_id": definition.workflow_id,
            "workflow_version": definition.version,
        },
    }
    config = dict(cnode.spec.config)
    headers = dict(config.get("headers") or {})
    for key, template in cnode.templates.items():
        if key.startswith("headers."):
            headers[key[len("headers.") :]] = template.render(context)
        else:
            config[key] = template.render(context)
    if headers:
        config["headers"] = headers
    config["type"] = cnode.spec.type
    config["retry"] = cnode.spec.retry.to_dict()
    config["timeout_ms"] = cnode.spec.timeout_ms
    return config
