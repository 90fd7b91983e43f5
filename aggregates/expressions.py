"""Expressions in CEL (`common-expression-language`) and templates in Jinja2's sandbox.

Never Python `eval`. Programs are compiled once per definition version (see
`definition.compiled`) and evaluated many times; evaluation gets only the variables a
program reads, and of `nodes` only the node outputs it names, so the cost stays flat as
an execution grows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cel
from flowlog.aggregates.errors import ExpressionError, TemplateError
from jinja2 import StrictUndefined, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

# CEL's standard functions (the operators, `_+_` and so on, are always allowed).
CEL_FUNCTIONS = frozenset(
    {
        "size", "int", "uint", "double", "string", "bytes", "bool", "type", "dyn",
        "duration", "timestamp", "matches", "contains", "startsWith", "endsWith",
        "getFullYear", "getMonth", "getDate", "getDayOfMonth", "getDayOfWeek",
        "getDayOfYear", "getHours", "getMinutes", "getSeconds", "getMilliseconds",
        "has", "all", "exists", "exists_one", "map", "filter", "max", "min",
    }
)  # fmt: skip

_NODE_DOT = re.compile(r"\bnodes\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_NODE_INDEX = re.compile(r"""\bnodes\s*\[\s*(['"])([^'"]+)\1\s*\]""")
_NODE_ANY = re.compile(r"\bnodes\b")
# Variables bound by CEL macros (`xs.map(x, ...)`), which `references()` reports as free.
_MACRO_VAR = re.compile(r"\.\s*(?:map|filter|all|exists|exists_one)\s*\(\s*([A-Za-z_]\w*)\s*,")


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled CEL program and what it reads."""

    source: str
    program: Any
    variables: frozenset[str]
    functions: frozenset[str]
    # Node ids read through `nodes.<id>` / `nodes["<id>"]`; None when `nodes` is read whole.
    node_refs: frozenset[str] | None

    def evaluate(self, variables: dict[str, Any]) -> Any:
        """Evaluate over `variables`; raises ExpressionError with the reason on failure."""
        try:
            return self.program.execute(variables)
        except Exception as exc:  # the cel core raises several builtin types
            raise ExpressionError(self.source, f"{type(exc).__name__}: {exc}") from None


def _node_refs(source: str) -> frozenset[str] | None:
    named = {m.group(1) for m in _NODE_DOT.finditer(source)}
    named |= {m.group(2) for m in _NODE_INDEX.finditer(source)}
    uses = len(_NODE_ANY.findall(source))
    dotted = len(_NODE_DOT.findall(source)) + len(_NODE_INDEX.findall(source))
    return frozenset(named) if uses == dotted else None


def compile_expression(source: str) -> Expression:
    """Compile a CEL expression; raises ExpressionError (with the parser's message)."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError(str(source), "an expression must be a non-empty string")
    try:
        program = cel.compile(source)
    except Exception as exc:
        text = str(exc)
        if "ERROR: <input>:" in text:  # keep "<line>:<col>: <message>"
            text = text.split("ERROR: <input>:", 1)[1]
        raise ExpressionError(source, text.splitlines()[0].strip()) from None
    refs = program.references()
    functions = frozenset(
        f for f in refs.get("functions", []) if not (f.startswith(("_", "!", "@")))
    )
    return Expression(
        source=source,
        program=program,
        variables=frozenset(refs.get("variables", []))
        - {m.group(1) for m in _MACRO_VAR.finditer(source)},
        functions=functions,
        node_refs=_node_refs(source),
    )


SECRET_MARK = "${secret:"
_SECRET_REF = re.compile(r"\$\{secret:[^}]*\}")


def _escape_secret_refs(value: Any) -> Any:
    """Data a template inserts never becomes a secret reference.

    Only `${secret:NAME}` written in the definition itself is resolved by the executor;
    the same text arriving in data (a trigger payload, a model's answer) is escaped to
    `$${secret:NAME}`, which the executor turns back into the literal text. Without this a
    payload could make a webhook send any declared secret to its target.
    """
    text = value if isinstance(value, str) else str(value)
    return _SECRET_REF.sub(r"$\g<0>", text) if SECRET_MARK in text else value


_JINJA = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, finalize=_escape_secret_refs
)


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled sandboxed Jinja2 template."""

    source: str
    template: Any

    def render(self, context: dict[str, Any]) -> str:
        try:
            return str(self.template.render(context))
        except Exception as exc:
            raise TemplateError(f"template {self.source[:60]!r}: {exc}") from None


def compile_template(source: str) -> Template:
    """Compile a template in the sandbox; raises TemplateError on a syntax error."""
    try:
        return Template(source=source, template=_JINJA.from_string(source))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"line {exc.lineno}: {exc.message}") from None


def is_template(value: object) -> bool:
    """True when a string uses Jinja syntax and so needs rendering."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)
