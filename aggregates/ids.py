"""Deterministic identifiers: execution events get ids derived from (execution_id, seq)."""

from __future__ import annotations

import uuid

# Mirrored by flowlog.schemas; both sides must derive the same event ids.
NAMESPACE_FLOWLOG = uuid.UUID("6f1d1c2e-8b0a-5c7e-9a43-0f10c0ffee00")


def execution_event_id(execution_id: str, seq: int) -> str:
    """`uuid5(NAMESPACE_FLOWLOG, f"{execution_id}:{seq}")` as a string."""
    return str(uuid.uuid5(NAMESPACE_FLOWLOG, f"{execution_id}:{seq}"))


def task_key(execution_id: str, node_id: str, attempt: int) -> str:
    """The idempotency key of one node attempt, passed on to outside calls."""
    return f"{execution_id}:{node_id}:{attempt}"


def aggregate_uuid(kind: str, key: str) -> uuid.UUID:
    """The eventsourcing originator id of an aggregate keyed by a string id."""
    return uuid.uuid5(NAMESPACE_FLOWLOG, f"{kind}:{key}")
