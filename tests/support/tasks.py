"""Build `NodeTaskIssued` values for executor tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from flowlog.schemas.events import NodeTaskIssued


def make_task(
    node_type: str,
    config: dict[str, Any],
    input: Any = None,
    *,
    node_id: str = "n1",
    attempt: int = 1,
    timeout_ms: int = 5_000,
    deadline_in_s: float = 30.0,
    execution_id: str | None = None,
) -> NodeTaskIssued:
    execution_id = execution_id or f"ex-{uuid.uuid4().hex[:8]}"
    return NodeTaskIssued(
        execution_id=execution_id, workflow_id="wf-test", workflow_version=1,
        node_id=node_id, node_type=node_type, attempt=attempt,
        task_key=f"{execution_id}:{node_id}:{attempt}",
        input=input if input is not None else {}, config={"type": node_type, **config},
        timeout_ms=timeout_ms, deadline_at=datetime.now(UTC) + timedelta(seconds=deadline_in_s),
    )  # fmt: skip
