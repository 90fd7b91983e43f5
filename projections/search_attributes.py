"""Search attributes, the pure part: a declaration (name, type, CEL expression) checked at
declare time, the activation an expression sees, and its result turned into a typed value.

What an expression sees (two variables, nothing else):

* ``events``: the execution's events in seq order, each a map ``{type, seq, occurred_at
  (timestamp), node_id (or null), data}`` where ``data`` holds the event's own fields (those
  of docs/events.md besides the envelope), e.g. ``data.model``, ``data.cost_usd``,
  ``data.input``, ``data.error``;
* ``execution``: a summary folded from those events: ``execution_id, workflow_id,
  workflow_version, tenant, status, trigger_source, input, output, error, failed_node,
  created_at, finished_at (null until final), last_seq, model_calls, input_tokens,
  output_tokens, cost_usd``.

The value is a function of the history alone (never of the time of evaluation), so
evaluating again writes the same value (backfill and live path agree).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Literal

import cel
from flowlog.aggregates.errors import ExpressionError
from flowlog.aggregates.execution import events as ev
from flowlog.aggregates.execution.evolve import fold
from flowlog.aggregates.expressions import CEL_FUNCTIONS, Expression, compile_expression

AttributeType = Literal["keyword", "int", "double", "bool", "datetime"]
TYPES: tuple[str, ...] = ("keyword", "int", "double", "bool", "datetime")
#: The value column of each type in `search_attribute_values`.
COLUMN = {"keyword": "v_keyword", "int": "v_int", "double": "v_double", "bool": "v_bool",
          "datetime": "v_datetime"}
VARIABLES = frozenset({"events", "execution"})
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
#: Names an attribute may not take: the executions list's own filters and columns.
RESERVED = frozenset({
    "workflow", "workflow_id", "workflow_version", "status", "trigger_source", "tenant",
    "created_from", "created_to", "created_at", "sort", "limit", "cursor", "execution_id",
    "last_event_at", "started_at", "finished_at", "attr", "search", "events", "execution",
})  # fmt: skip
MAX_KEYWORD = 1024
ENVELOPE = frozenset(f.name for f in fields(ev.ExecutionEvent))


class SearchAttributeError(ValueError):
    """A declaration or a value that cannot be used; the message names field, value, fix."""


@dataclass(frozen=True, slots=True)
class Declaration:
    name: str
    type: str
    expression: Expression

    @property
    def column(self) -> str:
        return COLUMN[self.type]


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise SearchAttributeError(
            f"name {name!r} is not a search attribute name: use 1 to 63 lowercase letters, "
            "digits and underscores, starting with a letter (e.g. customer_tier)")
    if name in RESERVED:
        raise SearchAttributeError(
            f"name {name!r} collides with a built-in filter or column of GET /api/executions;"
            f" choose another (e.g. {name}_attr)")
    return name


def check_type(type_: str) -> str:
    if type_ not in TYPES:
        raise SearchAttributeError(
            f"type {type_!r} is not a search attribute type: use one of {', '.join(TYPES)}")
    return type_


def declaration(name: str, type_: str, source: str) -> Declaration:
    """Check name and type, compile the expression and check what it reads (only `events`
    and `execution`, only CEL's standard functions); then type-check it by evaluating it
    over a sample history (the CEL library has no static checker): a result of another
    type than declared is refused. Raises SearchAttributeError naming field, value, fix."""
    check_name(name)
    check_type(type_)
    try:
        expr = compile_expression(source)
    except ExpressionError as exc:
        raise SearchAttributeError(f"--expr {source!r} does not compile: {exc}; fix the CEL "
                                   "syntax (see docs/api.md, Search attributes)") from None
    unknown = sorted(expr.variables - VARIABLES)
    if unknown:
        raise SearchAttributeError(
            f"--expr {source!r} reads {', '.join(unknown)}, which an expression cannot see: "
            "use `events` (a list of {type, seq, occurred_at, node_id, data}) and "
            "`execution` (a summary: status, tenant, input, cost_usd, ...)")
    functions = sorted(expr.functions - CEL_FUNCTIONS)
    if functions:
        raise SearchAttributeError(
            f"--expr {source!r} calls {', '.join(functions)}, which is not a CEL standard "
            "function here; use size, has, exists, filter, map, matches, timestamp, ...")
    decl = Declaration(name, type_, expr)
    try:
        result = expr.evaluate(activation(sample_history()))
    except ExpressionError:
        return decl  # e.g. a key only some executions have: counted per execution later
    coerce(decl, result, "a sample execution")
    return decl


def event_map(e: ev.ExecutionEvent) -> dict[str, Any]:
    data = {f: getattr(e, f) for f in ev._FIELD_NAMES[type(e)] if f not in ENVELOPE}
    return {"type": e.event_type, "seq": e.seq, "occurred_at": e.occurred_at,
            "node_id": data.get("node_id"), "data": data}


def activation(events: list[ev.ExecutionEvent]) -> dict[str, Any]:
    """The variables an expression sees for one execution (its events in seq order)."""
    state = fold(events)
    first = events[0] if events else None
    final = next((e for e in reversed(events) if isinstance(
        e, ev.ExecutionSucceeded | ev.ExecutionFailed | ev.ExecutionCancelled
        | ev.ExecutionRejected)), None)
    calls = [e for e in events if isinstance(e, ev.AgentModelCalled)]
    started = next((e for e in events if isinstance(
        e, ev.ExecutionStarted | ev.ExecutionQueued)), None)
    execution = {
        "execution_id": state.execution_id, "workflow_id": state.workflow_id,
        "workflow_version": state.workflow_version, "tenant": state.tenant,
        "status": state.status, "trigger_source": started.trigger_source if started else None,
        "input": state.input, "output": state.output, "error": state.error,
        "failed_node": state.failed_node,
        "created_at": first.occurred_at if first else None,
        "finished_at": final.occurred_at if final else None,
        "last_seq": state.seq, "model_calls": len(calls),
        "input_tokens": sum(c.input_tokens for c in calls),
        "output_tokens": sum(c.output_tokens for c in calls),
        "cost_usd": float(sum(c.cost_usd for c in calls)),
    }
    return {"events": [event_map(e) for e in events], "execution": execution}


def coerce(decl: Declaration, value: Any, where: str) -> Any:
    """The expression's result as a value of the declared type (None: no value)."""
    if value is None:
        return None
    t = decl.type
    ok: Any = None
    if t == "keyword" and isinstance(value, str):
        if len(value) > MAX_KEYWORD:
            raise SearchAttributeError(
                f"search attribute {decl.name!r}: the keyword for {where} is {len(value)} "
                f"characters; at most {MAX_KEYWORD} are kept: shorten it in the expression")
        ok = value
    elif t == "int" and isinstance(value, int) and not isinstance(value, bool):
        if not -2**63 <= value < 2**63:
            raise SearchAttributeError(f"search attribute {decl.name!r}: {value} for {where} "
                                       "does not fit a 64-bit integer")
        ok = value
    elif t == "double" and isinstance(value, int | float) and not isinstance(value, bool):
        ok = float(value)
    elif t == "bool" and isinstance(value, bool):
        ok = value
    elif t == "datetime" and isinstance(value, datetime):
        ok = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if ok is None:
        hint = {"keyword": "string(...)", "int": "int(...)", "double": "double(...)",
                "bool": "a comparison", "datetime": "timestamp(...)"}[t]
        raise SearchAttributeError(
            f"search attribute {decl.name!r} is declared {t}, but its expression "
            f"{decl.expression.source!r} gives {type(value).__name__} {str(value)[:80]!r} "
            f"for {where}: convert it with {hint} in the expression, or declare the type "
            f"{guess_type(value)}")
    return ok


def guess_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, datetime):
        return "datetime"
    return "keyword"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One evaluation: the typed value (None: none) or the error's text."""

    value: Any
    error: str | None


def evaluate(decl: Declaration, variables: dict[str, Any], execution_id: str) -> Outcome:
    """Evaluate for one execution; an error is returned, never raised (it is counted)."""
    try:
        # only the variables the expression reads, in a cel Context: converting every
        # event of a history into CEL values is most of an evaluation's cost
        context = cel.Context()
        context.update({k: variables[k] for k in decl.expression.variables if k in variables})
        raw = decl.expression.evaluate(context)
        return Outcome(coerce(decl, raw, f"execution {execution_id}"), None)
    except (ExpressionError, SearchAttributeError) as exc:
        return Outcome(None, str(exc)[:1000])
    except Exception as exc:  # a bug in a value's conversion must not stop the evaluator
        return Outcome(None, f"{type(exc).__name__}: {exc}"[:1000])


def parse_value(decl_type: str, name: str, text: str) -> Any:
    """A filter's text as a value of the attribute's type; SearchAttributeError naming the
    attribute, the value and the fix."""
    try:
        if decl_type == "keyword":
            return text
        if decl_type == "int":
            value = int(text)
            if not -2**63 <= value < 2**63:
                raise ValueError("out of range")
            return value
        if decl_type == "double":
            f = float(text)
            if f != f or f in (float("inf"), float("-inf")):
                raise ValueError("not finite")
            return f
        if decl_type == "bool":
            if text.lower() in ("true", "1"):
                return True
            if text.lower() in ("false", "0"):
                return False
            raise ValueError("not a bool")
        if decl_type == "datetime":
            at = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "+"))
            return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    except ValueError:
        pass
    example = {"keyword": "gold", "int": "3", "double": "0.5", "bool": "true",
               "datetime": "2026-01-31T12:00:00Z"}[decl_type]
    raise SearchAttributeError(
        f"attr.{name}={text[:60]!r}: search attribute {name!r} is {decl_type} and "
        f"{text[:60]!r} is not one; pass e.g. attr.{name}={example}")


def sample_history() -> list[ev.ExecutionEvent]:
    """A small successful execution with a model call: the declare-time type check."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    env: dict[str, Any] = {"execution_id": "sample", "workflow_id": "sample",
                           "workflow_version": 1, "correlation_id": None,
                           "causation_id": "c", "tenant": "default", "occurred_at": at}
    return [
        ev.ExecutionStarted(event_id="e1", seq=1, input={}, trigger_source="manual",
                            dedup_key=None, **env),
        ev.NodeScheduled(event_id="e2", seq=2, node_id="n", node_type="agent", attempt=1,
                         input={}, task_key="t", **env),
        ev.NodeStarted(event_id="e3", seq=3, node_id="n", attempt=1, **env),
        ev.AgentModelCalled(event_id="e4", seq=4, node_id="n", attempt=1, provider="p",
                            model="m", input_tokens=1, output_tokens=1, cost_usd=0.01,
                            latency_ms=1, **env),
        ev.NodeSucceeded(event_id="e5", seq=5, node_id="n", attempt=1, output={}, **env),
        ev.ExecutionSucceeded(event_id="e6", seq=6, output={}, **env),
    ]
