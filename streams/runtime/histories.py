"""The history of an execution in which every node succeeds at once. Pure: no I/O; time and
ids are passed in.

The benchmarks' fixtures (benchmarks/bench_rebuild.py) and the unit tests of the rebuild
(tests/unit/streams/runtime/test_orchestrator_window.py) build their execution-events
partitions from it, so both write what the orchestrator writes: one decision per input,
decided by the pure aggregate (`decide`, `evolve`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flowlog.aggregates.definition import CompiledDefinition
from flowlog.aggregates.execution import ExecutionState, decide, evolve
from flowlog.aggregates.execution import events as dev
from flowlog.aggregates.execution import inputs as dinp


@dataclass(frozen=True)
class Decision:
    """One input's decision: the input's event id (the batch's causation id) and the
    events decided, in seq order (the content of one `ExecutionEventBatch`)."""

    input_id: str
    events: list[dev.ExecutionEvent]


@dataclass(frozen=True)
class History:
    execution_id: str
    decisions: list[Decision]
    state: ExecutionState  # after the last decision


def succeeding_history(definition: CompiledDefinition, *, execution_id: str,
                       start: datetime, new_id: Callable[[], str], step: timedelta,
                       output: Any = None, finish: bool = True) -> History:
    """Trigger ``definition`` (its own version) and report every scheduled node as
    succeeded with ``output``, in the order the nodes were scheduled, until nothing is
    pending; each input is decided ``step`` after the previous one, the first at
    ``start + step``. ``new_id`` gives the event id of the trigger, then of each result.

    ``finish=False``: the result that would finish the execution is never reported, so it
    stays running (its last node scheduled). Only for definitions whose nodes all run as tasks
    that succeed (no waits, loops or conditions that need other inputs).
    """
    state = ExecutionState()
    now = start
    pending: list[dinp.Input] = [dinp.TriggerReceived(
        event_id=new_id(), execution_id=execution_id, workflow_id=definition.workflow_id,
        workflow_version=definition.version)]
    decisions = []
    while pending:
        inp = pending.pop(0)
        now += step
        events = decide(state, inp, now, definition)
        if not finish and any(isinstance(e, dev.ExecutionSucceeded) for e in events):
            break  # the result that would finish it is never reported
        for e in events:
            evolve(state, e)
            if isinstance(e, dev.NodeScheduled):
                pending.append(dinp.NodeResultReported(
                    event_id=new_id(), node_id=e.node_id, attempt=1, status="succeeded",
                    output=output, task_key=e.task_key))
        if events:
            decisions.append(Decision(inp.event_id, events))
    return History(execution_id, decisions, state)
