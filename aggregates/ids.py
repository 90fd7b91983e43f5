"""Deterministic identifiers: execution events get ids derived from (execution_id, seq)."""

from __future__ import annotations

import uuid

# One namespace, one derivation: the contract owns them (aggregates may import schemas).
from flowlog.schemas.ids import NAMESPACE_FLOWLOG, execution_event_id

__all__ = ["NAMESPACE_FLOWLOG", "aggregate_uuid", "execution_event_id", "task_key"]


def task_key(execution_id: str, node_id: str, attempt: int) -> str:
    """The idempotency key of one node attempt, passed on to outside calls."""
    return f"{execution_id}:{node_id}:{attempt}"


def aggregate_uuid(kind: str, key: str) -> uuid.UUID:
    """The eventsourcing originator id of an aggregate keyed by a string id."""
    return uuid.uuid5(NAMESPACE_FLOWLOG, f"{kind}:{key}")
