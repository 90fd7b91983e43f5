"""The workflow-execution aggregate: inputs, events, state, decide and evolve."""

from flowlog.aggregates.execution.decide import decide
from flowlog.aggregates.execution.evolve import evolve, fold
from flowlog.aggregates.execution.state import ExecutionState

__all__ = ["ExecutionState", "decide", "evolve", "fold"]
