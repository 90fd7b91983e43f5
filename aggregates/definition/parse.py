"""Read a definition from YAML or JSON text or a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from flowlog.aggregates.definition.model import WorkflowSpec
from flowlog.aggregates.definition.validate import validate_definition
from flowlog.aggregates.errors import DefinitionInvalid, DefinitionParseError


def parse_text(text: str, *, filename: str = "<text>") -> dict[str, Any]:
    """YAML or JSON (JSON is YAML) text → a mapping; raises DefinitionParseError."""
    try:
        if filename.endswith(".json"):
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise DefinitionParseError(f"{filename}: not valid YAML/JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DefinitionParseError(f"{filename}: the top level must be a mapping")
    return data


def parse_definition(raw: dict[str, Any]) -> WorkflowSpec:
    """Validate a mapping; raises DefinitionInvalid listing every issue."""
    spec, issues = validate_definition(raw)
    if spec is None:
        raise DefinitionInvalid(issues)
    return spec


def load_definition(path: str | Path) -> WorkflowSpec:
    """Read, parse and validate a definition file."""
    p = Path(path)
    return parse_definition(parse_text(p.read_text(encoding="utf-8"), filename=p.name))
