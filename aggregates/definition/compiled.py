"""The compiled form of one definition version: the DAG's indexes, CEL programs and templates.

Compiled once per (workflow_id, version) and cached, so the decide path never parses.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from flowlog.aggregates.definition.model import NodeSpec, WorkflowSpec
from flowlog.aggregates.expressions import (
    Expression,
    Template,
    compile_expression,
    compile_template,
    is_template,
)

_TEMPLATE_KEYS = {"agent": ("prompt", "system"), "webhook": ("url", "body")}


@dataclass(frozen=True, slots=True)
class CompiledNode:
    spec: NodeSpec
    dependents: tuple[str, ...]
    inputs: tuple[tuple[str, Expression], ...]
    # transform: `output` (a single expression under key "" or a map); condition: "if" or
    # "switch"; loop: "for_each" or "while"; delay: "until"; wait: "match".
    exprs: dict[str, Expression]
    # condition: branch name → target node ids
    branches: dict[str, tuple[str, ...]]
    templates: dict[str, Template]
    body: CompiledNode | None


class CompiledDefinition:
    """Indexes and compiled programs for one definition version (immutable once built)."""

    def __init__(self, spec: WorkflowSpec) -> None:
        self.spec = spec
        self.workflow_id = spec.id
        self.version = spec.version
        dependents: dict[str, list[str]] = {n: [] for n in spec.nodes}
        for nid, node in spec.nodes.items():
            for dep in node.needs:
                dependents[dep].append(nid)
        self.nodes: dict[str, CompiledNode] = {
            nid: _compile_node(node, tuple(dependents[nid])) for nid, node in spec.nodes.items()
        }
        self.roots = tuple(nid for nid, node in spec.nodes.items() if not node.needs)
        self.outputs = tuple((k, compile_expression(v)) for k, v in spec.outputs.items())
        self.input_specs = spec.inputs
        self.timeout_ms = spec.timeout_ms
        self.max_executions = spec.max_executions

    def node(self, node_id: str) -> CompiledNode:
        """The node, or a loop's body for an iteration id such as `fanout[3]`."""
        found = self.nodes.get(node_id)
        if found is not None:
            return found
        loop_id, _ = split_iteration(node_id)
        body = self.nodes[loop_id].body
        if body is None:
            raise KeyError(node_id)
        return body

    def has_node(self, node_id: str) -> bool:
        if node_id in self.nodes:
            return True
        loop_id, index = split_iteration(node_id)
        return index is not None and loop_id in self.nodes and self.nodes[loop_id].body is not None


def split_iteration(node_id: str) -> tuple[str, int | None]:
    """`"fanout[3]"` → `("fanout", 3)`; a plain node id → `(node_id, None)`."""
    if node_id.endswith("]") and "[" in node_id:
        base, _, rest = node_id.partition("[")
        try:
            return base, int(rest[:-1])
        except ValueError:
            return node_id, None
    return node_id, None


def iteration_id(loop_id: str, index: int) -> str:
    return f"{loop_id}[{index}]"


def _compile_node(spec: NodeSpec, dependents: tuple[str, ...]) -> CompiledNode:
    cfg = spec.config
    exprs: dict[str, Expression] = {}
    branches: dict[str, tuple[str, ...]] = {}
    templates: dict[str, Template] = {}
    if spec.type == "transform":
        out = cfg["output"]
        if isinstance(out, dict):
            exprs.update({f"output.{k}": compile_expression(v) for k, v in out.items()})
        else:
            exprs["output"] = compile_expression(out)
    elif spec.type == "condition":
        if "if" in cfg:
            exprs["if"] = compile_expression(cfg["if"])
            branches = {"then": _ids(cfg.get("then")), "else": _ids(cfg.get("else"))}
        else:
            exprs["switch"] = compile_expression(cfg["switch"])
            branches = {str(k): _ids(v) for k, v in (cfg.get("cases") or {}).items()}
            branches["default"] = _ids(cfg.get("default"))
    elif spec.type == "loop":
        key = "for_each" if "for_each" in cfg else "while"
        exprs[key] = compile_expression(cfg[key])
    elif spec.type == "delay" and "until" in cfg:
        exprs["until"] = compile_expression(cfg["until"])
    elif spec.type == "wait" and cfg.get("match"):
        exprs["match"] = compile_expression(cfg["match"])
    for key in _TEMPLATE_KEYS.get(spec.type, ()):
        if is_template(cfg.get(key)):
            templates[key] = compile_template(cfg[key])
    if spec.type == "webhook":
        for hk, hv in (cfg.get("headers") or {}).items():
            if is_template(hv):
                templates[f"headers.{hk}"] = compile_template(hv)
    return CompiledNode(
        spec=spec,
        dependents=dependents,
        inputs=tuple((k, compile_expression(v)) for k, v in spec.input.items()),
        exprs=exprs,
        branches=branches,
        templates=templates,
        body=_compile_node(spec.body, ()) if spec.body is not None else None,
    )


def _ids(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


_CACHE: OrderedDict[tuple[str, int, str], CompiledDefinition] = OrderedDict()
_CACHE_SIZE = 256


def fingerprint(raw: dict[str, Any]) -> str:
    """A short hash of the definition's canonical JSON."""
    text = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def compile_definition(spec: WorkflowSpec) -> CompiledDefinition:
    """The compiled definition, cached per (workflow_id, version, content)."""
    key = (spec.id, spec.version, fingerprint(spec.raw))
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    compiled = CompiledDefinition(spec)
    _CACHE[key] = compiled
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return compiled
