"""Imports point inward (DESIGN.md section 2, STYLE habit 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
OURS = {"schemas", "aggregates", "streams", "projections", "api", "infra", "settings", "cli"}


def imported_packages(folder: str) -> dict[str, set[str]]:
    """file -> the flowlog subpackages it imports."""
    found: dict[str, set[str]] = {}
    for path in (REPO / folder).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = []
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            for mod in modules:
                parts = mod.split(".")
                if parts[0] == "flowlog" and len(parts) > 1:
                    names.add(parts[1])
                elif parts[0] in OURS - {"settings", "cli"}:
                    names.add(parts[0])
        found[str(path.relative_to(REPO))] = names
    return found


def test_aggregates_import_only_schemas_or_themselves() -> None:
    for path, names in imported_packages("aggregates").items():
        bad = names & {"streams", "projections", "api", "infra", "cli"}
        assert not bad, f"{path} imports {sorted(bad)}"


def test_schemas_import_nothing_of_ours_but_settings() -> None:
    for path, names in imported_packages("schemas").items():
        bad = names - {"schemas", "settings"}
        assert not bad, f"{path} imports {sorted(bad)}"


def test_projections_import_only_schemas_aggregates_or_themselves() -> None:
    """Projections read the log through `schemas` and `aggregates` (records, the fold's
    events, the definition aggregate), never through the engine in `streams`."""
    for path, names in imported_packages("projections").items():
        bad = names & {"streams", "api", "infra", "cli"}
        assert not bad, f"{path} imports {sorted(bad)}"
