"""The domain's error tree. Whether an error is retryable is part of its type."""

from __future__ import annotations

from dataclasses import dataclass


class FlowlogDomainError(Exception):
    """Base of every error raised by `flowlog.aggregates`."""

    retryable: bool = False


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    """One problem in a workflow definition: where, what value, and how to fix it."""

    path: str
    message: str
    value: object = None
    fix: str = ""

    def render(self) -> str:
        text = f"{self.path or '<root>'}: {self.message}"
        if self.value is not None:
            text += f" (got {self.value!r})"
        if self.fix:
            text += f" — fix: {self.fix}"
        return text


class DefinitionInvalid(FlowlogDomainError):
    """A definition failed validation; `issues` lists every problem found in one pass."""

    def __init__(self, issues: list[ValidationIssue]) -> None:
        self.issues = issues
        lines = "\n".join(f"  {i.render()}" for i in issues)
        super().__init__(f"workflow definition has {len(issues)} error(s):\n{lines}")


class DefinitionParseError(FlowlogDomainError):
    """The file is not YAML or JSON, or its top level is not a mapping."""


class ExpressionError(FlowlogDomainError):
    """A CEL expression failed to compile or to evaluate (a definition bug: not retryable)."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"expression {source!r}: {reason}")


class TemplateError(FlowlogDomainError):
    """A Jinja template failed to compile or render (a definition bug: not retryable)."""


class InvalidTransition(FlowlogDomainError):
    """A command does not fit the aggregate's current state (e.g. update an archived workflow)."""
