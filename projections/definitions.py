"""The pure layer for `workflow-definitions`: records driven through the definition
aggregate (`aggregates.definition.aggregate.WorkflowDefinition`, the one lifecycle fold),
then read off as `workflows` and `workflow_versions` rows.

The aggregate's own rules decide: versions are consecutive, an archived workflow takes no
change, a definition must parse. A record they refuse is a `Reject` (with the reason); a
record that repeats what the aggregate already holds (the same version re-published, an
activation of an active workflow) changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from flowlog.aggregates.definition.aggregate import WorkflowDefinition
from flowlog.aggregates.errors import FlowlogDomainError
from flowlog.projections.fold import Reject, Row
from flowlog.schemas.model import canonical_json

WORKFLOW_COLUMNS: tuple[str, ...] = (
    "workflow_id", "name", "status", "latest_version", "pause_reason", "created_at",
    "updated_at",
)
VERSION_COLUMNS: tuple[str, ...] = (
    "workflow_id", "version", "name", "definition", "node_count", "defined_at",
)
DEFINITION_EVENTS = frozenset({"WorkflowDefined", "WorkflowUpdated", "WorkflowActivated",
                               "WorkflowPaused", "WorkflowArchived"})


@dataclass
class Definitions:
    """Every workflow's aggregate (definitions are few: all of them stay in memory)."""

    aggregates: dict[str, WorkflowDefinition] = field(default_factory=dict)
    created: dict[str, Any] = field(default_factory=dict)


@dataclass
class DefinitionChanges:
    workflows: dict[str, Row] = field(default_factory=dict)
    versions: list[Row] = field(default_factory=list)


def _definition(record: dict[str, Any]) -> dict[str, Any]:
    raw = record.get("definition")
    value = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    if not isinstance(value, dict):
        raise Reject(f"{record.get('event_type')} of {record.get('workflow_id')}: the "
                     "definition is not a JSON object")
    return value


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    strip = ("version",)
    return canonical_json({k: v for k, v in a.items() if k not in strip}) == canonical_json(
        {k: v for k, v in b.items() if k not in strip})


def apply_definition(state: Definitions, name: str, record: dict[str, Any],
                     changes: DefinitionChanges) -> bool:
    """Fold one decoded definition record; False when it changes nothing (a repeat)."""
    if name not in DEFINITION_EVENTS:
        raise Reject(f"{name} is not a definition event")
    wid = record["workflow_id"]
    at = record["occurred_at"]
    agg = state.aggregates.get(wid)
    versions_before = agg.latest_version if agg is not None else 0
    version_before = agg.version if agg is not None else 0
    try:
        if name in ("WorkflowDefined", "WorkflowUpdated"):
            definition = _definition(record)
            version = int(record["version"])
            if agg is None:
                if version != 1:
                    raise Reject(f"{name} of {wid} v{version}: the workflow has no version "
                                 "1 (its first definition was never seen)")
                agg = state.aggregates[wid] = WorkflowDefinition.define(definition,
                                                                        timestamp=at)
                state.created[wid] = at
            elif version <= agg.latest_version:
                if _same(agg.versions[version], definition):
                    return False
                raise Reject(f"{name} of {wid} v{version}: version {version} already "
                             "holds a different definition")
            elif version != agg.latest_version + 1:
                raise Reject(f"{name} of {wid} v{version}: follows v{agg.latest_version} "
                             f"(versions {agg.latest_version + 1}..{version - 1} missing)")
            else:
                agg.update(definition, timestamp=at)
        elif agg is None:
            raise Reject(f"{name} of unknown workflow {wid} (no WorkflowDefined before it)")
        elif name == "WorkflowActivated":
            agg.activate(timestamp=at)
        elif name == "WorkflowPaused":
            agg.pause(record.get("reason") or "", timestamp=at)
        else:
            agg.archive(timestamp=at)
    except FlowlogDomainError as exc:
        raise Reject(f"{name} of {wid}: {exc}") from exc
    if agg.version == version_before:
        return False
    agg.collect_events()  # the aggregate's pending events are not ours to keep
    for v in range(versions_before + 1, agg.latest_version + 1):
        spec_raw = agg.versions[v]
        changes.versions.append({
            "workflow_id": wid, "version": v, "name": spec_raw.get("name"),
            "definition": spec_raw, "node_count": len(spec_raw.get("nodes") or {}),
            "defined_at": at,
        })  # fmt: skip
    changes.workflows[wid] = workflow_row(state, wid, at)
    return True


def workflow_row(state: Definitions, wid: str, at: Any) -> Row:
    agg = state.aggregates[wid]
    return {
        "workflow_id": wid, "name": agg.versions[agg.latest_version].get("name"),
        "status": agg.status, "latest_version": agg.latest_version,
        "pause_reason": agg.pause_reason, "created_at": state.created[wid], "updated_at": at,
    }  # fmt: skip
