"""Field-level checks shared by the validator: each adds issues with a path, never raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flowlog.aggregates.definition.model import NodeSpec, parse_duration_ms
from flowlog.aggregates.errors import ValidationIssue


def join_path(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


class Issues:
    """Collects every issue found in one pass."""

    def __init__(self) -> None:
        self.items: list[ValidationIssue] = []

    def add(self, path: str, message: str, value: object = None, fix: str = "") -> None:
        self.items.append(ValidationIssue(path=path, message=message, value=value, fix=fix))

    def unknown_keys(self, path: str, mapping: dict[str, Any], allowed: set[str]) -> None:
        for key in mapping:
            if key not in allowed:
                self.add(
                    join_path(path, str(key)),
                    "unknown field",
                    fix=f"remove it or use one of: {', '.join(sorted(allowed))}",
                )

    def string(self, path: str, value: object, *, required: bool = False) -> str | None:
        if value is None:
            if required:
                self.add(path, "required field is missing", fix="add a string value")
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            self.add(path, "wrong type: expected a non-empty string", value)
            return None
        return value

    def integer(
        self, path: str, value: object, *, minimum: int = 0, required: bool = False
    ) -> int | None:
        if value is None:
            if required:
                self.add(path, "required field is missing", fix="add an integer")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, "wrong type: expected an integer", value)
            return None
        if value < minimum:
            self.add(path, f"must be at least {minimum}", value)
            return None
        return value

    def number(self, path: str, value: object, *, lo: float, hi: float) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(path, "wrong type: expected a number", value)
            return None
        if not lo <= value <= hi:
            self.add(path, f"must be between {lo} and {hi}", value)
            return None
        return float(value)

    def boolean(self, path: str, value: object) -> bool | None:
        if value is None:
            return None
        if not isinstance(value, bool):
            self.add(path, "wrong type: expected true or false", value)
            return None
        return value

    def duration(self, path: str, value: object, *, required: bool = False) -> int | None:
        if value is None:
            if required:
                self.add(path, "required field is missing", fix='add a duration such as "30s"')
            return None
        ms = parse_duration_ms(value)
        if ms is None:
            self.add(
                path,
                "bad duration",
                value,
                fix='use a number of seconds or "250ms", "30s", "5m", "2h", "1d"',
            )
        return ms

    def mapping(self, path: str, value: object, *, required: bool = False) -> dict[str, Any]:
        if value is None:
            if required:
                self.add(path, "required field is missing", fix="add a mapping")
            return {}
        if not isinstance(value, dict):
            self.add(path, "wrong type: expected a mapping", _short(value))
            return {}
        return value

    def str_list(self, path: str, value: object) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            self.add(path, "wrong type: expected a list of strings", _short(value))
            return []
        out: list[str] = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append(item)
            else:
                self.add(join_path(path, i), "wrong type: expected a string", _short(item))
        return out

    def choice(self, path: str, value: object, choices: tuple[str, ...], default: str) -> str:
        if value is None:
            return default
        if value not in choices:
            self.add(path, "not an allowed value", value, fix=f"use one of: {', '.join(choices)}")
            return default
        return str(value)


def _short(value: object) -> object:
    text = repr(value)
    return value if len(text) <= 60 else text[:57] + "..."


@dataclass
class Collected:
    """What the structure walk found for the graph and expression checks."""

    nodes: dict[str, NodeSpec] = field(default_factory=dict)
    # (path, source, owner node id or None for outputs, extra variables allowed)
    expressions: list[tuple[str, str, str | None, frozenset[str]]] = field(default_factory=list)
    templates: list[tuple[str, str]] = field(default_factory=list)
    # (path, target node id, condition node id)
    branch_targets: list[tuple[str, str, str]] = field(default_factory=list)
