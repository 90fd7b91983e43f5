"""`FinishedWindow`: which finished executions of one partition a role still keeps. Pure.

The orchestrator and the processor both keep, per partition, every unfinished execution
and the retired state (identity, seq, applied input ids) of the last `size` finished
ones; this class is the bookkeeping of that window, shared by both
(`FLOWLOG_FINISHED_WINDOW`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator


class FinishedWindow:
    """The ids of a partition's last ``size`` finished executions, oldest first.

    `add` records an execution as the most recently finished and returns the ids that fall
    out of the window (the oldest beyond ``size``); the caller drops their states.

    Bound: a role holds per partition its unfinished executions plus at most ``size``
    retired states, so memory no longer grows with history.

    Consequence: an input for an execution that left the window finds no state. A
    non-trigger input then decides nothing (counted as `unknown_execution` and dropped); a
    `TriggerReceived` re-sent with the same execution id would start the execution again.
    Kafka's redelivery cannot cause that: the processor commits its input offsets in the
    transaction of its writes, and the orchestrator commits them within
    `FLOWLOG_COMMIT_INTERVAL_MS` of its writes, far fewer than ``size`` finished executions
    later. Only a producer re-sending an old trigger with the same id can.
    """

    __slots__ = ("_ids", "size")

    def __init__(self, size: int) -> None:
        self.size = max(1, size)  # at least the execution that just finished
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, execution_id: str) -> list[str]:
        """Record ``execution_id`` as the most recently finished; the ids evicted."""
        self._ids[execution_id] = None
        self._ids.move_to_end(execution_id)
        evicted = []
        while len(self._ids) > self.size:
            old, _ = self._ids.popitem(last=False)
            evicted.append(old)
        return evicted

    def __contains__(self, execution_id: object) -> bool:
        return execution_id in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"FinishedWindow(size={self.size}, held={len(self._ids)})"
