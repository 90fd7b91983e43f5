"""WorkflowExecution: the eventsourcing `Aggregate` around the pure decide/evolve core.

The wrapper is thin on purpose. `decide` and `evolve` (over `ExecutionState`) are the
source of truth; this class records each domain event as one eventsourcing event
(`ExecutionStarted`-first, then `Recorded`) whose `originator_version` equals the domain
`seq` and whose `timestamp` is the decision's `now` (passed as `timestamp=`, so the
library never reads the wall clock). That gives the audit store (the eventsourcing
PostgreSQL recorder) the same history as `execution-events`, without a second model.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate, event
from flowlog.aggregates.definition.compiled import CompiledDefinition
from flowlog.aggregates.execution.decide import decide
from flowlog.aggregates.execution.events import ExecutionEvent, event_from_dict, event_to_dict
from flowlog.aggregates.execution.evolve import evolve
from flowlog.aggregates.execution.inputs import Input, TriggerReceived
from flowlog.aggregates.execution.state import ExecutionState
from flowlog.aggregates.ids import aggregate_uuid


class WorkflowExecution(Aggregate):
    """One execution. Create with `start`, advance with `handle`."""

    @staticmethod
    def create_id(execution_id: str) -> uuid.UUID:
        return aggregate_uuid("execution", execution_id)

    @classmethod
    def start(
        cls,
        trigger: TriggerReceived,
        definition: CompiledDefinition | None,
        *,
        now: datetime,
        accepting: bool = True,
    ) -> WorkflowExecution:
        """Decide on the trigger and record the resulting events (started or rejected)."""
        events = decide(ExecutionState(), trigger, now, definition, accepting=accepting)
        first, rest = events[0], events[1:]
        agg = cls(execution_id=trigger.execution_id, event=event_to_dict(first), timestamp=now)
        for e in rest:
            agg._recorded(event=event_to_dict(e), timestamp=now)
        return agg

    @event("ExecutionCreated")
    def __init__(self, execution_id: str, event: dict[str, Any], timestamp: datetime) -> None:
        self.state = evolve(ExecutionState(), event_from_dict(event))

    def handle(
        self, input_: Input, definition: CompiledDefinition, *, now: datetime
    ) -> list[ExecutionEvent]:
        """Decide on one input and record the events; returns them (empty if already applied)."""
        events = decide(self.state, input_, now, definition)
        for e in events:
            self._recorded(event=event_to_dict(e), timestamp=now)
        return events

    @event("Recorded")
    def _recorded(self, event: dict[str, Any], timestamp: datetime) -> None:
        self.state = evolve(self.state, event_from_dict(event))
