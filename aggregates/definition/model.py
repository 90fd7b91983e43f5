"""The definition model: immutable values built from a validated YAML/JSON mapping."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flowlog.aggregates.retry import RetryPolicy

NODE_TYPES = (
    "agent", "tool", "transform", "condition", "loop", "parallel",
    "webhook", "delay", "subworkflow", "wait",
)  # fmt: skip
# Node types whose work is done by an executor (they become NodeScheduled / node tasks).
SIDE_EFFECT_TYPES = frozenset({"agent", "tool", "webhook", "subworkflow"})
# Node types a loop may run as its body.
LOOP_BODY_TYPES = frozenset({"agent", "tool", "webhook", "subworkflow", "transform"})
FAILURE_POLICIES = ("fail", "continue", "dead_letter")
JOIN_MODES = ("all", "any", "n_of_m")
TRIGGER_TYPES = ("manual", "webhook", "schedule", "event", "poll")
INPUT_TYPES = ("string", "number", "integer", "boolean", "object", "array", "any")

NODE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
SECRET_REF = re.compile(r"(?<!\$)\$\{secret:([^}]*)\}")  # `$${...}` is escaped text
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(value: object) -> int | None:
    """`"30s"`, `"5m"`, `"1.5h"`, `"250ms"` or a number of seconds → ms; None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value * 1000) if value >= 0 else None
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return int(float(m.group(1)) * _UNIT_MS[m.group(2)])
    return None


@dataclass(frozen=True, slots=True)
class InputSpec:
    name: str
    type: str = "any"
    required: bool = False
    default: Any = None


@dataclass(frozen=True, slots=True)
class TriggerSpec:
    type: str
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node. `config` holds the type-specific fields exactly as validated."""

    id: str
    type: str
    needs: tuple[str, ...] = ()
    input: dict[str, str] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_ms: int | None = None
    on_failure: str = "fail"
    config: dict[str, Any] = field(default_factory=dict)
    body: NodeSpec | None = None

    @property
    def side_effect(self) -> bool:
        return self.type in SIDE_EFFECT_TYPES


@dataclass(frozen=True, slots=True)
class WorkflowSpec:
    """A validated workflow definition (one version)."""

    id: str
    version: int
    name: str
    description: str
    secrets: tuple[str, ...]
    inputs: dict[str, InputSpec]
    outputs: dict[str, str]
    triggers: tuple[TriggerSpec, ...]
    timeout_ms: int | None
    nodes: dict[str, NodeSpec]
    raw: dict[str, Any]
    # executions of this workflow running at once (all versions); more wait in order
    max_executions: int | None = None
