"""Type-specific checks of one node's configuration."""

from __future__ import annotations

from typing import Any

from flowlog.aggregates.definition.fields import Collected, Issues, join_path
from flowlog.aggregates.definition.model import JOIN_MODES

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")


def check_node_config(
    issues: Issues,
    path: str,
    owner: str,
    typ: str,
    raw: dict[str, Any],
    needs: tuple[str, ...],
    found: Collected,
    extra: frozenset[str],
) -> dict[str, Any] | None:
    """Check the fields of node type `typ`; returns the raw loop body, if any."""

    def expr(key: str, *, required: bool = True, more: frozenset[str] = frozenset()) -> None:
        p = join_path(path, key)
        src = raw.get(key)
        if src is None and not required:
            return
        if issues.string(p, src, required=True) is not None:
            found.expressions.append((p, src, owner, extra | more))

    def template(key: str, *, required: bool = False) -> None:
        p = join_path(path, key)
        src = raw.get(key)
        if src is None and not required:
            return
        if issues.string(p, src, required=True) is not None:
            found.templates.append((p, src))

    def targets(p: str, value: object) -> None:
        for i, target in enumerate(issues.str_list(p, value)):
            found.branch_targets.append((join_path(p, i), target, owner))

    if typ == "agent":
        issues.string(join_path(path, "model"), raw.get("model"), required=True)
        issues.string(join_path(path, "provider"), raw.get("provider"))
        template("prompt", required=True)
        template("system")
        issues.str_list(join_path(path, "tools"), raw.get("tools"))
        issues.integer(join_path(path, "max_steps"), raw.get("max_steps"), minimum=1)
    elif typ == "tool":
        issues.string(join_path(path, "tool"), raw.get("tool"), required=True)
    elif typ == "transform":
        out = raw.get("output")
        if isinstance(out, dict):
            for key, src in out.items():
                p = join_path(join_path(path, "output"), key)
                if issues.string(p, src, required=True) is not None:
                    found.expressions.append((p, src, owner, extra))
        else:
            expr("output")
    elif typ == "condition":
        _condition(issues, path, raw, expr, targets)
    elif typ == "loop":
        return _loop(issues, path, raw, expr)
    elif typ == "parallel":
        mode = issues.choice(join_path(path, "join"), raw.get("join"), JOIN_MODES, "all")
        n = issues.integer(join_path(path, "n"), raw.get("n"), minimum=1)
        if len(needs) < 2:
            issues.add(join_path(path, "needs"), "a parallel join needs at least two branches",
                       list(needs), fix="list the branch nodes it joins in `needs`")  # fmt: skip
        if mode == "n_of_m":
            if n is None and "n" not in raw:
                issues.add(join_path(path, "n"), "required when join is n_of_m",
                           fix="add n: how many branches must succeed")  # fmt: skip
            elif n is not None and n > len(needs):
                issues.add(join_path(path, "n"), f"more than the {len(needs)} branches", n,
                           fix="n must be at most the number of needs")  # fmt: skip
        elif "n" in raw:
            issues.add(join_path(path, "n"), "only used when join is n_of_m", raw.get("n"))
    elif typ == "webhook":
        template("url", required=True)
        method = raw.get("method", "POST")
        if method not in HTTP_METHODS:
            issues.add(join_path(path, "method"), "not an HTTP method", method,
                       fix=f"use one of: {', '.join(HTTP_METHODS)}")  # fmt: skip
        for key, val in issues.mapping(join_path(path, "headers"), raw.get("headers")).items():
            p = join_path(join_path(path, "headers"), key)
            if issues.string(p, val, required=True) is not None:
                found.templates.append((p, val))
        if isinstance(raw.get("body"), str):
            template("body")
    elif typ == "delay":
        has_d, has_u = "duration" in raw, "until" in raw
        if has_d == has_u:
            issues.add(path, "a delay needs exactly one of `duration` or `until`",
                       fix='add duration: "30s", or until: <CEL timestamp>')  # fmt: skip
        if has_d:
            issues.duration(join_path(path, "duration"), raw.get("duration"), required=True)
        if has_u:
            expr("until")
    elif typ == "subworkflow":
        issues.string(join_path(path, "workflow"), raw.get("workflow"), required=True)
        issues.integer(join_path(path, "version"), raw.get("version"), minimum=1)
    elif typ == "wait":
        issues.string(join_path(path, "event"), raw.get("event"), required=True)
        expr("match", required=False, more=frozenset({"event"}))
    return None


def _condition(issues: Issues, path: str, raw: dict[str, Any], expr: Any, targets: Any) -> None:
    has_if, has_switch = "if" in raw, "switch" in raw
    if has_if == has_switch:
        issues.add(path, "a condition needs exactly one of `if` or `switch`",
                   fix="use if/then/else, or switch/cases/default")  # fmt: skip
        return
    if has_if:
        expr("if")
        for key in ("cases",):
            if key in raw:
                issues.add(join_path(path, key), "only used with switch")
        if "then" not in raw:
            issues.add(join_path(path, "then"), "required with if", fix="list the nodes to run")
        targets(join_path(path, "then"), raw.get("then"))
        targets(join_path(path, "else"), raw.get("else"))
        return
    expr("switch")
    for key in ("then", "else"):
        if key in raw:
            issues.add(join_path(path, key), "only used with if", fix="use cases/default")
    cases = issues.mapping(join_path(path, "cases"), raw.get("cases"), required=True)
    cpath = join_path(path, "cases")
    for key in cases:
        targets(join_path(cpath, str(key)), cases[key])
    if "default" in raw:
        targets(join_path(path, "default"), raw["default"])


def _loop(issues: Issues, path: str, raw: dict[str, Any], expr: Any) -> dict[str, Any] | None:
    has_each, has_while = "for_each" in raw, "while" in raw
    if has_each == has_while:
        fix = "for_each: <CEL list>, or while: <CEL bool> with max_iterations"
        issues.add(path, "a loop needs exactly one of `for_each` or `while`", fix=fix)
    if has_each:
        expr("for_each")
    if has_while:
        expr("while", more=frozenset({"iteration"}))
        if "max_iterations" not in raw:
            issues.add(join_path(path, "max_iterations"), "required with while",
                       fix="bound the loop, e.g. max_iterations: 10")  # fmt: skip
    issues.integer(join_path(path, "max_concurrency"), raw.get("max_concurrency"), minimum=1)
    issues.integer(join_path(path, "max_iterations"), raw.get("max_iterations"), minimum=1)
    if has_while and raw.get("max_concurrency", 1) != 1:
        issues.add(join_path(path, "max_concurrency"), "a while loop runs one iteration at a time",
                   raw.get("max_concurrency"), fix="remove max_concurrency")  # fmt: skip
    if "do" not in raw:
        issues.add(join_path(path, "do"), "required field is missing",
                   fix="add the body node, e.g. do: {type: tool, tool: ...}")  # fmt: skip
        return None
    body = raw.get("do")
    if not isinstance(body, dict):
        issues.add(join_path(path, "do"), "wrong type: expected a node mapping", body)
        return None
    return body
