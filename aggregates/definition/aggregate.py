"""WorkflowDefinition: the eventsourcing aggregate holding every version of one workflow.

Versions are immutable: `update` adds a new one. Status: draft (defined, not yet active),
active, paused, archived (final). Only an active workflow accepts triggers. Timestamps are
passed in (`timestamp=`), never read from a clock.
"""

from __future__ import annotations

import copy
import uuid
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate, event
from flowlog.aggregates.definition.compiled import CompiledDefinition, compile_definition
from flowlog.aggregates.definition.lifecycle import transition
from flowlog.aggregates.definition.model import WorkflowSpec
from flowlog.aggregates.definition.parse import parse_definition
from flowlog.aggregates.errors import InvalidTransition
from flowlog.aggregates.ids import aggregate_uuid


def _versioned(definition: dict[str, Any], version: int) -> WorkflowSpec:
    raw = copy.deepcopy(definition)
    raw["version"] = version
    return parse_definition(raw)


class WorkflowDefinition(Aggregate):
    """Every version of one workflow definition, and whether it accepts triggers."""

    @staticmethod
    def create_id(workflow_id: str) -> uuid.UUID:
        return aggregate_uuid("workflow", workflow_id)

    @classmethod
    def define(cls, definition: dict[str, Any], *, timestamp: datetime) -> WorkflowDefinition:
        """Create version 1 from a raw mapping (validated first; raises DefinitionInvalid)."""
        spec = _versioned(definition, 1)
        return cls(workflow_id=spec.id, definition=spec.raw, version=1, timestamp=timestamp)

    @event("WorkflowDefined")
    def __init__(
        self, workflow_id: str, definition: dict[str, Any], version: int, timestamp: datetime
    ) -> None:
        self.workflow_id = workflow_id
        self.versions: dict[int, dict[str, Any]] = {version: definition}
        self.latest_version = version
        self.status = transition(None, "WorkflowDefined", workflow_id)
        self.pause_reason: str | None = None

    def update(self, definition: dict[str, Any], *, timestamp: datetime) -> int:
        """Add the next version; returns its number. The workflow id may not change."""
        self._require_not_archived("update")
        version = self.latest_version + 1
        spec = _versioned(definition, version)
        if spec.id != self.workflow_id:
            raise InvalidTransition(
                f"definition id {spec.id!r} is not {self.workflow_id!r}: "
                "a new workflow needs `define`"
            )
        self._updated(definition=spec.raw, version=version, timestamp=timestamp)
        return version

    @event("WorkflowUpdated")
    def _updated(self, definition: dict[str, Any], version: int, timestamp: datetime) -> None:
        self.versions[version] = definition
        self.latest_version = version

    def activate(self, *, timestamp: datetime) -> None:
        self._require_not_archived("activate")
        if self.status != "active":
            self._activated(timestamp=timestamp)

    @event("WorkflowActivated")
    def _activated(self, timestamp: datetime) -> None:
        self.status = transition(self.status, "WorkflowActivated", self.workflow_id)
        self.pause_reason = None

    def pause(self, reason: str = "", *, timestamp: datetime) -> None:
        self._require_not_archived("pause")
        if self.status != "paused":
            self._paused(reason=reason, timestamp=timestamp)

    @event("WorkflowPaused")
    def _paused(self, reason: str, timestamp: datetime) -> None:
        self.status = transition(self.status, "WorkflowPaused", self.workflow_id)
        self.pause_reason = reason

    def archive(self, *, timestamp: datetime) -> None:
        if self.status != "archived":
            self._archived(timestamp=timestamp)

    @event("WorkflowArchived")
    def _archived(self, timestamp: datetime) -> None:
        self.status = transition(self.status, "WorkflowArchived", self.workflow_id)

    @property
    def accepting(self) -> bool:
        """Whether a trigger may start an execution."""
        return self.status == "active"

    def spec(self, version: int | None = None) -> WorkflowSpec:
        return parse_definition(self.versions[version or self.latest_version])

    def compiled(self, version: int | None = None) -> CompiledDefinition:
        """The compiled definition of `version` (latest by default), cached per version."""
        return compile_definition(self.spec(version))

    def _require_not_archived(self, action: str) -> None:
        event_type = {"update": "WorkflowUpdated", "activate": "WorkflowActivated",
                      "pause": "WorkflowPaused"}[action]
        transition(self.status, event_type, self.workflow_id)  # raises InvalidTransition
