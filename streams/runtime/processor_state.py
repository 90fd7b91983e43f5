"""What the processor keeps of one execution partition, and its snapshot. Pure: no I/O.

Per partition: the `ExecutionState` of every unfinished execution (folded by `evolve`
only), the retired state of the last `window` finished ones, the loop items of unfinished
executions (a templated iteration's config renders from its item; `ExecutionState` does not
keep items), the executions under flow control, and a heap of armed timers by due time
(lazy deletion: an entry is live while its execution still holds that timer id with that
due time), plus `events_offset`, the next execution-events offset the state covers.

Bound: finished executions beyond the `FinishedWindow` (window.py, shared with the
orchestrator; its docstring gives the bound and the consequence for late inputs) leave
memory: their states, item maps, flow-control marks and (lazily) heap entries.
"""

from __future__ import annotations

import heapq
from datetime import datetime
from typing import Any

from flowlog.aggregates.execution import ExecutionState, evolve
from flowlog.aggregates.execution import events as dev
from flowlog.aggregates.execution.state import FINISHED_PHASES
from flowlog.streams.runtime.window import FinishedWindow

SNAPSHOT_VERSION = 1
#: A heap entry: (due timestamp, execution id, timer id, due time ISO as the state keeps it)
HeapEntry = tuple[float, str, str, str]


class PartitionState:
    def __init__(self, partition: int, window: int) -> None:
        self.partition = partition
        self.states: dict[str, ExecutionState] = {}
        self.finished = FinishedWindow(window)
        self.items: dict[str, dict[str, Any]] = {}  # execution -> iteration id -> item
        self.limited: set[str] = set()  # executions that were queued (flow control)
        self.heap: list[HeapEntry] = []
        self.events_offset = 0
        self.evicted = 0
        self._retired_dicts: dict[str, dict[str, Any]] = {}  # snapshot cache, finished only
        # finished executions read from a snapshot and not asked for since: kept as their
        # snapshot dicts, turned into states on first use (a restart reads thousands of
        # retired states and needs few of them; building them all was most of its time)
        self._lazy: dict[str, dict[str, Any]] = {}

    # --- the fold ---------------------------------------------------------------------------
    def get(self, execution_id: str) -> ExecutionState:
        """The execution's state (a fresh one when unknown; not stored until applied)."""
        return self._known(execution_id) or ExecutionState()

    def _known(self, execution_id: str) -> ExecutionState | None:
        state = self.states.get(execution_id)
        if state is None and execution_id in self._lazy:
            d = self._lazy.pop(execution_id)
            state = self.states[execution_id] = ExecutionState.from_dict(d)
            self._retired_dicts[execution_id] = d
        return state

    def __len__(self) -> int:
        """Executions held (unfinished, and finished within the window)."""
        return len(self.states) + len(self._lazy)

    def apply(self, state: ExecutionState, events: list[dev.ExecutionEvent]) -> ExecutionState:
        """Evolve ``state`` by a decision's events and keep the result (retired if finished)."""
        for e in events:
            evolve(state, e)
            if isinstance(e, dev.TimerSet):
                heapq.heappush(self.heap, (e.due_at.timestamp(), e.execution_id, e.timer_id,
                                           e.due_at.isoformat()))
            elif isinstance(e, dev.LoopIterationStarted):
                self.items.setdefault(e.execution_id, {})[f"{e.node_id}[{e.index}]"] = e.item
            elif isinstance(e, dev.ExecutionQueued):
                self.limited.add(e.execution_id)
        eid = state.execution_id
        if state.finished:
            self._finish(eid, state)
        else:
            self.states[eid] = state
        return self.states.get(eid, state)

    def replay(self, e: dev.ExecutionEvent) -> bool:
        """Fold one logged event during a rebuild: False for a re-written one (seq already
        applied) or one after a gap (never expected: logged by the caller)."""
        state = self._known(e.execution_id)
        if state is None:
            if e.execution_id in self.finished or e.seq != 1:
                return False
            state = ExecutionState()
        if e.seq != state.seq + 1:
            return False
        self.apply(state, [e])
        return True

    def _finish(self, eid: str, state: ExecutionState) -> None:
        self.states[eid] = state.retired()
        self._lazy.pop(eid, None)
        self._retired_dicts.pop(eid, None)
        self.items.pop(eid, None)
        for old in self.finished.add(eid):
            self._evict(old)

    def _evict(self, eid: str) -> None:
        self.states.pop(eid, None)
        self._lazy.pop(eid, None)
        self._retired_dicts.pop(eid, None)
        self.limited.discard(eid)
        self.evicted += 1

    def unanswered(self, scheduled: dict[str, dict[str, dict[str, Any]]]
                   ) -> list[dict[str, Any]]:
        """Of the `NodeScheduled` records read from the log's tail (execution -> node -> the
        record, the last per node), those still waiting for their result: the execution is
        unfinished and the node's run is that attempt, scheduled or started. At least once,
        their tasks may never have reached node-tasks (a crash after the events' ack, before
        the tasks'): the processor issues them again (same task keys: the executor drops or
        re-publishes a task it knows, and the ids make a second result a duplicate)."""
        out = []
        for eid, nodes in scheduled.items():
            state = self.states.get(eid)
            if state is None or state.finished:
                continue
            for node_id, r in nodes.items():
                run = state.nodes.get(node_id)
                if (run is not None and run.status in ("scheduled", "started")
                        and run.attempt == r["attempt"]):
                    out.append(r)
        return out

    def item(self, execution_id: str, node_id: str) -> Any:
        items = self.items.get(execution_id)
        return items.get(node_id) if items is not None else None

    # --- timers -----------------------------------------------------------------------------
    def next_due(self) -> float | None:
        return self.heap[0][0] if self.heap else None

    def due(self, now: datetime) -> list[tuple[str, str, tuple[str, str | None, int | None,
                                                                 str]]]:
        """Pop every armed timer due at ``now``: (execution id, timer id, timer)."""
        out = []
        ts = now.timestamp()
        heap = self.heap
        while heap and heap[0][0] <= ts:
            _, eid, timer_id, due_iso = heap[0]
            state = self.states.get(eid)
            timer = state.timers.get(timer_id) if state is not None else None
            if timer is None or timer[3] != due_iso or state is None or state.finished:
                heapq.heappop(heap)  # disarmed, fired, re-armed or finished since
                continue
            if datetime.fromisoformat(due_iso) > now:
                break  # the float rounded it early: next check
            heapq.heappop(heap)
            out.append((eid, timer_id, timer))
        if len(heap) > 1024 and len(heap) > 4 * max(1, len(self.states)):
            self._compact()
        return out

    def _compact(self) -> None:
        self.heap = [h for h in self.heap if (s := self.states.get(h[1])) is not None
                     and (t := s.timers.get(h[2])) is not None and t[3] == h[3]]
        heapq.heapify(self.heap)

    def _rearm(self) -> None:
        self.heap = [(datetime.fromisoformat(t[3]).timestamp(), eid, tid, t[3])
                     for eid, s in self.states.items() if not s.finished
                     for tid, t in s.timers.items()]
        heapq.heapify(self.heap)

    # --- snapshots --------------------------------------------------------------------------
    def to_snapshot(self) -> dict[str, Any]:
        """A JSON-able snapshot covering execution-events up to ``events_offset``."""
        states = []
        for eid, s in self.states.items():
            if s.finished:
                d = self._retired_dicts.get(eid)
                if d is None:
                    d = self._retired_dicts[eid] = s.to_dict()
                states.append(d)
            else:
                states.append(s.to_dict())
        states.extend(self._lazy.values())
        return {"v": SNAPSHOT_VERSION, "partition": self.partition,
                "events_offset": self.events_offset, "states": states,
                "finished": list(self.finished), "items": self.items,
                "limited": sorted(self.limited), "evicted": self.evicted}

    @classmethod
    def from_snapshot(cls, data: dict[str, Any], window: int) -> PartitionState:
        if data.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"processor snapshot version {data.get('v')!r} is not "
                             f"{SNAPSHOT_VERSION}: rebuild from the log (delete the snapshot)")
        out = cls(int(data["partition"]), window)
        out.events_offset = int(data["events_offset"])
        for d in data["states"]:
            if d["phase"] in FINISHED_PHASES:
                out._lazy[d["execution_id"]] = d
            else:
                s = ExecutionState.from_dict(d)
                out.states[s.execution_id] = s
        out.items = {k: dict(v) for k, v in data["items"].items()}
        out.limited = set(data["limited"])
        out.evicted = int(data.get("evicted", 0))
        for eid in data["finished"]:  # oldest first; a smaller window than the snapshot's
            for old in out.finished.add(eid):  # lets the oldest go
                out._evict(old)
        out._rearm()
        return out
