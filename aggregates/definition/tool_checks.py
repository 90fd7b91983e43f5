"""Checks that know the tools: a definition's tool and agent nodes against a tool catalog.

The catalog maps each tool name to its input's JSON schema (pydantic's
``model_json_schema()``); the streams layer builds it from the tool registry, so this
module stays pure. Checked: the tool of a tool node exists; the keys of its ``input``
cover the tool's required fields and name no field the tool does not take (unless the
tool accepts extra fields); every tool an agent node offers exists.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from flowlog.aggregates.definition.model import NodeSpec, WorkflowSpec
from flowlog.aggregates.errors import ValidationIssue

#: tool name -> JSON schema of the tool's input
ToolCatalog = Mapping[str, Mapping[str, Any]]


def _nodes(spec: WorkflowSpec) -> Iterator[tuple[str, NodeSpec]]:
    for node_id, node in spec.nodes.items():
        path = f"nodes.{node_id}"
        while node is not None:
            yield path, node
            node, path = node.body, f"{path}.do"  # a loop's body node


def _known(catalog: ToolCatalog) -> str:
    return ", ".join(sorted(catalog)) or "none"


def _missing_tool(path: str, name: str, catalog: ToolCatalog) -> ValidationIssue:
    return ValidationIssue(
        path, "names a tool no installed plugin provides", name,
        f"use one of: {_known(catalog)}; or install the plugin that provides {name!r} "
        "(entry point group 'flowlog.tools' or FLOWLOG_TOOL_MODULES); or, if only some "
        "executor deployments have it, apply with --allow-missing-tools")


def check_tools(spec: WorkflowSpec, catalog: ToolCatalog, *,
                allow_missing: bool = False) -> list[ValidationIssue]:
    """Every problem between ``spec``'s tool and agent nodes and ``catalog``.

    With ``allow_missing`` a tool absent from the catalog is not an error (its input cannot
    be checked either); a tool that is present is still checked.
    """
    issues: list[ValidationIssue] = []
    for path, node in _nodes(spec):
        if node.type == "tool":
            name = str(node.config.get("tool", ""))
            schema = catalog.get(name)
            if schema is None:
                if not allow_missing:
                    issues.append(_missing_tool(f"{path}.tool", name, catalog))
                continue
            issues += _input_issues(f"{path}.input", name, node.input, schema)
        elif node.type == "agent":
            for i, name in enumerate(node.config.get("tools") or ()):
                if name not in catalog and not allow_missing:
                    issues.append(_missing_tool(f"{path}.tools[{i}]", str(name), catalog))
    return issues


def _input_issues(path: str, tool: str, given: Mapping[str, Any],
                  schema: Mapping[str, Any]) -> list[ValidationIssue]:
    props: Mapping[str, Any] = schema.get("properties") or {}
    required = [str(f) for f in schema.get("required") or ()]
    out: list[ValidationIssue] = []
    missing = [f for f in required if f not in given]
    if missing:
        example = ", ".join(f"{f}: <expression>" for f in missing)
        out.append(ValidationIssue(
            path, f"lacks the field(s) tool {tool!r} requires: {', '.join(missing)}",
            dict(given) or None, f"add {example} under {path}"))
    extra = schema.get("additionalProperties")
    if extra is None or extra is False:  # pydantic's default (ignore) and 'forbid'
        unknown = [k for k in given if k not in props]
        if unknown:
            out.append(ValidationIssue(
                path, f"names field(s) tool {tool!r} does not take: {', '.join(unknown)}",
                dict(given), f"remove them, or use one of: {', '.join(sorted(props)) or 'none'}"))
    return out
