"""Validate a raw definition mapping: every error, with its path, in one pass.

`validate_definition(raw)` returns `(spec, issues)`; `spec` is None when there are issues.
Structure and types are checked here; the graph, expressions, templates, cron and secret
references in `checks.py`.
"""

from __future__ import annotations

from flowlog.aggregates.definition import checks, trigger_checks
from flowlog.aggregates.definition.fields import Collected, Issues, join_path
from flowlog.aggregates.definition.model import (
    FAILURE_POLICIES,
    INPUT_TYPES,
    LOOP_BODY_TYPES,
    NODE_ID,
    NODE_TYPES,
    TRIGGER_TYPES,
    InputSpec,
    NodeSpec,
    TriggerSpec,
    WorkflowSpec,
)
from flowlog.aggregates.definition.node_checks import check_node_config
from flowlog.aggregates.errors import ValidationIssue
from flowlog.aggregates.retry import RetryPolicy

TOP_KEYS = {
    "id", "name", "description", "version", "secrets", "inputs", "outputs",
    "triggers", "timeout", "defaults", "nodes", "concurrency",
}  # fmt: skip
COMMON_NODE_KEYS = {"type", "needs", "input", "retry", "timeout", "on_failure", "description"}
TYPE_KEYS: dict[str, set[str]] = {
    "agent": {"model", "provider", "prompt", "system", "tools", "max_steps"},
    "tool": {"tool"},
    "transform": {"output"},
    "condition": {"if", "then", "else", "switch", "cases", "default"},
    "loop": {"for_each", "while", "max_concurrency", "max_iterations", "do"},
    "parallel": {"join", "n"},
    "webhook": {"url", "method", "headers", "body"},
    "delay": {"duration", "until"},
    "subworkflow": {"workflow", "version"},
    "wait": {"event", "match"},
}
TRIGGER_KEYS: dict[str, set[str]] = {
    "manual": set(),
    "webhook": trigger_checks.WEBHOOK_KEYS,
    "schedule": trigger_checks.SCHEDULE_KEYS,
    "event": trigger_checks.EVENT_KEYS,
    "poll": trigger_checks.POLL_KEYS,
}
RETRY_KEYS = {"max_attempts", "initial_delay", "multiplier", "max_delay", "jitter"}
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def validate_definition(raw: object) -> tuple[WorkflowSpec | None, list[ValidationIssue]]:
    """Check a parsed definition; returns the spec (None on error) and every issue found."""
    issues = Issues()
    if not isinstance(raw, dict):
        issues.add("", "a definition must be a mapping", type(raw).__name__)
        return None, issues.items
    issues.unknown_keys("", raw, TOP_KEYS)
    wf_id = issues.string("id", raw.get("id"), required=True) or ""
    version = issues.integer("version", raw.get("version"), minimum=1) or 1
    name = issues.string("name", raw.get("name")) or wf_id
    description = issues.string("description", raw.get("description")) or ""
    secrets = tuple(issues.str_list("secrets", raw.get("secrets")))
    timeout_ms = issues.duration("timeout", raw.get("timeout"))
    inputs = _inputs(issues, raw.get("inputs"))
    outputs: dict[str, str] = {}
    found = Collected()
    for key, src in issues.mapping("outputs", raw.get("outputs")).items():
        if issues.string(join_path("outputs", key), src, required=True) is not None:
            outputs[key] = src
            found.expressions.append((join_path("outputs", key), src, None, frozenset()))
    triggers = _triggers(issues, raw.get("triggers"), found)
    defaults = issues.mapping("defaults", raw.get("defaults"))
    issues.unknown_keys("defaults", defaults, {"retry", "timeout", "on_failure"})
    default_retry = _retry(issues, "defaults.retry", defaults.get("retry"), RetryPolicy())
    default_timeout = issues.duration("defaults.timeout", defaults.get("timeout"))
    concurrency = issues.mapping("concurrency", raw.get("concurrency"))
    issues.unknown_keys("concurrency", concurrency, {"max_executions"})
    max_executions = issues.integer(
        "concurrency.max_executions", concurrency.get("max_executions"), minimum=1
    )
    default_policy = issues.choice(
        "defaults.on_failure", defaults.get("on_failure"), FAILURE_POLICIES, "fail"
    )
    raw_nodes = issues.mapping("nodes", raw.get("nodes"), required=True)
    if "nodes" in raw and isinstance(raw.get("nodes"), dict) and not raw_nodes:
        issues.add("nodes", "a workflow needs at least one node")
    for node_id, node_raw in raw_nodes.items():
        path = join_path("nodes", str(node_id))
        if not isinstance(node_id, str) or not NODE_ID.match(node_id):
            issues.add(path, "bad node id", node_id, fix="use letters, digits and _ (max 64)")
            continue
        spec = _node(
            issues, path, node_id, node_raw, found, default_retry, default_timeout, default_policy
        )
        if spec is not None:
            found.nodes[node_id] = spec
    checks.check_graph(issues, found)
    checks.check_expressions(issues, found, set(inputs))
    checks.check_templates(issues, found)
    checks.check_secrets(issues, raw, set(secrets))
    if issues.items:
        return None, issues.items
    spec = WorkflowSpec(
        id=wf_id,
        version=version,
        name=name,
        description=description,
        secrets=secrets,
        inputs=inputs,
        outputs=outputs,
        triggers=triggers,
        timeout_ms=timeout_ms,
        nodes=found.nodes,
        raw=raw,
        max_executions=max_executions,
    )
    return spec, []


def _inputs(issues: Issues, value: object) -> dict[str, InputSpec]:
    out: dict[str, InputSpec] = {}
    for name, decl in issues.mapping("inputs", value).items():
        path = join_path("inputs", name)
        if isinstance(decl, str):  # shorthand: `name: string`
            decl = {"type": decl}
        decl = issues.mapping(path, decl)
        issues.unknown_keys(path, decl, {"type", "required", "default", "description"})
        typ = issues.choice(join_path(path, "type"), decl.get("type"), INPUT_TYPES, "any")
        required = issues.boolean(join_path(path, "required"), decl.get("required")) or False
        out[name] = InputSpec(name=name, type=typ, required=required, default=decl.get("default"))
    return out


def _triggers(issues: Issues, value: object, found: Collected) -> tuple[TriggerSpec, ...]:
    if value is None:
        return (TriggerSpec(type="manual"),)
    if not isinstance(value, list):
        issues.add("triggers", "wrong type: expected a list of triggers", type(value).__name__)
        return ()
    out: list[TriggerSpec] = []
    for i, trig in enumerate(value):
        path = join_path("triggers", i)
        trig = issues.mapping(path, trig)
        typ = issues.choice(join_path(path, "type"), trig.get("type"), TRIGGER_TYPES, "manual")
        if "type" not in trig:
            issues.add(join_path(path, "type"), "required field is missing",
                       fix=f"use one of: {', '.join(TRIGGER_TYPES)}")  # fmt: skip
        issues.unknown_keys(path, trig, TRIGGER_KEYS[typ] | {"type"})
        config = {k: v for k, v in trig.items() if k != "type"}
        if typ == "schedule":
            checks.check_cron(issues, path, trig.get("cron"), trig.get("timezone"))
            trigger_checks.check_schedule(issues, path, trig)
        elif typ == "event":
            trigger_checks.check_event(issues, path, trig, found)
        elif typ == "poll":
            trigger_checks.check_poll(issues, path, trig, found)
        elif typ == "webhook":
            trigger_checks.check_webhook(issues, path, trig, found)
        out.append(TriggerSpec(type=typ, config=config))
    return tuple(out)


def _retry(issues: Issues, path: str, value: object, base: RetryPolicy) -> RetryPolicy:
    raw = issues.mapping(path, value)
    if not raw:
        return base
    issues.unknown_keys(path, raw, RETRY_KEYS)
    initial = issues.duration(join_path(path, "initial_delay"), raw.get("initial_delay"))
    max_delay = issues.duration(join_path(path, "max_delay"), raw.get("max_delay"))
    multiplier = issues.number(join_path(path, "multiplier"), raw.get("multiplier"), lo=1, hi=100)
    jitter = issues.number(join_path(path, "jitter"), raw.get("jitter"), lo=0, hi=1)
    attempts = issues.integer(join_path(path, "max_attempts"), raw.get("max_attempts"), minimum=1)
    return RetryPolicy(
        max_attempts=attempts if attempts is not None else base.max_attempts,
        initial_delay_ms=initial if initial is not None else base.initial_delay_ms,
        multiplier=multiplier if multiplier is not None else base.multiplier,
        max_delay_ms=max_delay if max_delay is not None else base.max_delay_ms,
        jitter=jitter if jitter is not None else base.jitter,
    )


def _node(
    issues: Issues,
    path: str,
    node_id: str,
    value: object,
    found: Collected,
    default_retry: RetryPolicy,
    default_timeout: int | None,
    default_policy: str,
    *,
    in_loop: bool = False,
    owner: str | None = None,
) -> NodeSpec | None:
    raw = issues.mapping(path, value, required=True)
    if not raw:
        return None
    typ = raw.get("type")
    if typ not in NODE_TYPES:
        issues.add(join_path(path, "type"), "unknown node type" if typ else "missing node type",
                   typ, fix=f"use one of: {', '.join(NODE_TYPES)}")  # fmt: skip
        return None
    if in_loop and typ not in LOOP_BODY_TYPES:
        issues.add(join_path(path, "type"), "this node type cannot be a loop body", typ,
                   fix=f"use one of: {', '.join(sorted(LOOP_BODY_TYPES))}")  # fmt: skip
        return None
    allowed = COMMON_NODE_KEYS | TYPE_KEYS[typ]
    if in_loop:
        allowed = allowed - {"needs"}
    issues.unknown_keys(path, raw, allowed)
    owner = owner or node_id
    extra = frozenset({"item", "index", "iteration"}) if in_loop else frozenset()
    needs = tuple(issues.str_list(join_path(path, "needs"), raw.get("needs")))
    inp: dict[str, str] = {}
    for key, src in issues.mapping(join_path(path, "input"), raw.get("input")).items():
        ipath = join_path(join_path(path, "input"), key)
        if issues.string(ipath, src, required=True) is not None:
            inp[key] = src
            found.expressions.append((ipath, src, owner, extra))
    retry = _retry(issues, join_path(path, "retry"), raw.get("retry"), default_retry)
    timeout = issues.duration(join_path(path, "timeout"), raw.get("timeout"))
    policy = issues.choice(
        join_path(path, "on_failure"), raw.get("on_failure"), FAILURE_POLICIES, default_policy
    )
    config = {k: v for k, v in raw.items() if k in TYPE_KEYS[typ]}
    body_raw = check_node_config(issues, path, owner, typ, raw, needs, found, extra)
    body = None
    if body_raw is not None:
        body = _node(issues, join_path(path, "do"), f"{node_id}.do", body_raw, found,
                     default_retry, default_timeout, default_policy,
                     in_loop=True, owner=node_id)  # fmt: skip
    return NodeSpec(
        id=node_id,
        type=typ,
        needs=needs,
        input=inp,
        retry=retry,
        timeout_ms=timeout if timeout is not None else default_timeout,
        on_failure=policy,
        config=config,
        body=body,
    )
