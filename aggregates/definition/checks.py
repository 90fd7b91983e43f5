"""Cross-field checks: the DAG, expressions, templates, cron schedules, secret references."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from flowlog.aggregates.definition.fields import Collected, Issues, join_path
from flowlog.aggregates.definition.model import SECRET_REF
from flowlog.aggregates.errors import ExpressionError, TemplateError
from flowlog.aggregates.expressions import CEL_FUNCTIONS, compile_expression, compile_template

BASE_VARIABLES = frozenset({"inputs", "nodes", "execution"})
_INPUT_REF = re.compile(r"\binputs\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")


def ancestors(nodes: dict[str, tuple[str, ...]]) -> dict[str, frozenset[str]]:
    """Transitive `needs` of every node (tolerates cycles and unknown ids)."""
    memo: dict[str, frozenset[str]] = {}

    def visit(node: str, stack: frozenset[str]) -> frozenset[str]:
        if node in memo:
            return memo[node]
        acc: set[str] = set()
        for dep in nodes.get(node, ()):
            if dep in nodes and dep not in stack:
                acc.add(dep)
                acc |= visit(dep, stack | {dep})
        result = frozenset(acc)
        if not stack - {node}:
            memo[node] = result
        return result

    return {n: visit(n, frozenset({n})) for n in nodes}


def find_cycles(graph: dict[str, tuple[str, ...]]) -> list[list[str]]:
    """Each distinct cycle once, as a list of node ids (first repeated at the end)."""
    color: dict[str, int] = {}
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def dfs(node: str, path: list[str]) -> None:
        color[node] = 1
        path.append(node)
        for dep in graph.get(node, ()):
            if dep not in graph:
                continue
            if color.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    cycles.append(cycle)
            elif color.get(dep) is None:
                dfs(dep, path)
        path.pop()
        color[node] = 2

    for node in graph:
        if node not in color:
            dfs(node, [])
    return cycles


def check_graph(issues: Issues, found: Collected) -> None:
    graph = {nid: spec.needs for nid, spec in found.nodes.items()}
    broken: set[str] = set()
    for nid, needs in graph.items():
        if len(set(needs)) != len(needs):
            issues.add(f"nodes.{nid}.needs", "lists a node twice", list(needs))
        for i, dep in enumerate(needs):
            if dep == nid:
                issues.add(f"nodes.{nid}.needs[{i}]", "a node cannot need itself", dep)
                broken.add(nid)
            elif dep not in graph:
                issues.add(f"nodes.{nid}.needs[{i}]", "unknown node", dep,
                           fix=_suggest(dep, graph))  # fmt: skip
                broken.add(nid)
    for cycle in find_cycles({n: tuple(d for d in g if d != n) for n, g in graph.items()}):
        issues.add(f"nodes.{cycle[0]}.needs", "cycle: " + " → ".join(reversed(cycle)),
                   fix="remove one of these needs")  # fmt: skip
        broken |= set(cycle)
    # Anything downstream of a cycle or an unknown need can never become ready.
    up = ancestors(graph)
    for nid in graph:
        if nid not in broken and up[nid] & broken:
            blockers = sorted(up[nid] & broken)
            issues.add(f"nodes.{nid}", "unreachable: it waits on a node that can never finish",
                       blockers, fix="fix the cycle or unknown need upstream")  # fmt: skip
    for path, target, cond in found.branch_targets:
        if target not in graph:
            issues.add(path, "unknown node", target, fix=_suggest(target, graph))
        elif cond not in graph[target]:
            issues.add(path, f"branch target does not need `{cond}`", target,
                       fix=f"add {cond} to nodes.{target}.needs")  # fmt: skip


def check_expressions(issues: Issues, found: Collected, input_names: set[str]) -> None:
    graph = {nid: spec.needs for nid, spec in found.nodes.items()}
    up = ancestors(graph)
    for path, src, owner, extra in found.expressions:
        try:
            expr = compile_expression(src)
        except ExpressionError as exc:
            issues.add(path, f"bad expression: {exc.reason}", src)
            continue
        allowed = BASE_VARIABLES | extra
        for var in sorted(expr.variables - allowed):
            issues.add(path, f"bad expression: unknown variable `{var}`", src,
                       fix=f"use one of: {', '.join(sorted(allowed))}")  # fmt: skip
        for fn in sorted(expr.functions - CEL_FUNCTIONS):
            issues.add(path, f"bad expression: unknown function `{fn}`", src)
        if input_names:
            for name in sorted({m.group(1) for m in _INPUT_REF.finditer(src)} - input_names):
                fix = f"declare it under inputs or use one of: {sorted(input_names)}"
                message = f"bad expression: `inputs.{name}` is not a declared input"
                issues.add(path, message, src, fix=fix)
        for ref in sorted(expr.node_refs or ()):
            if ref not in graph:
                issues.add(path, f"bad expression: unknown node `{ref}`", src,
                           fix=_suggest(ref, graph))  # fmt: skip
            elif owner is not None and ref not in up.get(owner, frozenset()):
                fix = f"add {ref} to nodes.{owner}.needs (directly or transitively)"
                message = f"bad expression: `{ref}` is not upstream of `{owner}`"
                issues.add(path, message, src, fix=fix)


def check_templates(issues: Issues, found: Collected) -> None:
    for path, src in found.templates:
        try:
            compile_template(src)
        except TemplateError as exc:
            issues.add(path, f"bad template: {exc}", src[:60])


def check_cron(issues: Issues, path: str, cron: object, timezone: object) -> None:
    cpath = join_path(path, "cron")
    if issues.string(cpath, cron, required=True) is not None:
        assert isinstance(cron, str)
        if not croniter.is_valid(cron):
            issues.add(cpath, "bad cron expression", cron, fix='five fields, e.g. "0 9 * * 1-5"')
    if timezone is not None:
        tpath = join_path(path, "timezone")
        try:
            if not isinstance(timezone, str):
                raise ValueError
            ZoneInfo(timezone)
        except Exception:
            issues.add(tpath, "unknown timezone", timezone, fix='an IANA name, e.g. "Europe/Paris"')


def check_secrets(issues: Issues, raw: dict[str, Any], declared: set[str]) -> None:
    for key in ("nodes", "triggers"):
        for path, text in _strings(raw.get(key), key):
            for m in SECRET_REF.finditer(text):
                if m.group(1) not in declared:
                    issues.add(path, f"missing secret reference `{m.group(1)}`", m.group(0),
                               fix=f"declare it: secrets: [{m.group(1)}]")  # fmt: skip


def _strings(value: object, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, join_path(path, str(k)))]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _strings(v, join_path(path, i))]
    return []


def _suggest(name: str, graph: dict[str, Any]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(graph), n=1)
    return f"did you mean `{close[0]}`?" if close else f"use one of: {', '.join(sorted(graph))}"
