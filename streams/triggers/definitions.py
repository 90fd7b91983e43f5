"""A definition registry that also remembers each workflow's tenant and what changed.

Trigger sources follow ``workflow-definitions`` through the engine's ``RegistryFollower``
with this registry, then sync the workflows marked dirty into their own tables.
"""

from __future__ import annotations

from typing import Any

from flowlog.streams.runtime.registry import DefinitionRegistry


class TrackingRegistry(DefinitionRegistry):
    def __init__(self) -> None:
        super().__init__()
        self.tenants: dict[str, str] = {}
        self.dirty: set[str] = set()

    def apply(self, name: str, record: dict[str, Any]) -> None:
        super().apply(name, record)
        wid = record["workflow_id"]
        self.tenants[wid] = record.get("tenant") or self.tenants.get(wid, "default")
        self.dirty.add(wid)

    def take_dirty(self) -> set[str]:
        out, self.dirty = self.dirty, set()
        return out

    def active_triggers(self, workflow_id: str, kind: str
                        ) -> tuple[int, list[tuple[int, dict[str, Any]]]]:
        """(version, [(trigger index, config)]) of ``kind`` in the newest version of an
        active, valid workflow; (0, []) otherwise."""
        wf = self.workflows.get(workflow_id)
        if wf is None or not wf.accepting or not wf.versions:
            return 0, []
        compiled = self.definition(workflow_id, wf.latest)
        if compiled is None:
            return 0, []
        spec = compiled.spec
        return wf.latest, [(i, dict(t.config)) for i, t in enumerate(spec.triggers)
                           if t.type == kind]
