"""The state of one workflow execution, folded from its events; JSON-able for snapshots.

Records inside the state (`NodeRun`, `LoopRun`, timer tuples) are immutable and replaced
on change, so `clone()` only copies the containers: `decide` works on a clone and never
touches the caller's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TERMINAL = frozenset({"succeeded", "failed", "skipped"})
ACTIVE_TASK = frozenset({"scheduled", "started", "running"})
FINISHED_PHASES = frozenset({"succeeded", "failed", "cancelled", "rejected"})


@dataclass(frozen=True, slots=True)
class NodeRun:
    """One node (or loop iteration, id `loop[i]`) and its current attempt."""

    status: str
    attempt: int = 0
    output: Any = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class LoopRun:
    """Loop bookkeeping: the next index to start, the running ones, and finished outputs."""

    next_index: int = 0
    active: frozenset[int] = frozenset()
    outputs: dict[int, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ExecutionState:
    """Everything `decide` needs about an execution. Build it only with `evolve`."""

    execution_id: str = ""
    workflow_id: str = ""
    workflow_version: int = 0
    tenant: str = "default"
    correlation_id: str | None = None
    phase: str = "pending"  # pending, queued, active, succeeded, failed, cancelled, rejected
    seq: int = 0
    input: dict[str, Any] = field(default_factory=dict)
    nodes: dict[str, NodeRun] = field(default_factory=dict)
    terminal: int = 0  # definition nodes (not iterations) in a terminal status
    loops: dict[str, LoopRun] = field(default_factory=dict)
    # timer_id -> (kind, node_id, attempt, due_at ISO)
    timers: dict[str, tuple[str, str | None, int | None, str]] = field(default_factory=dict)
    incidents: dict[str, str] = field(default_factory=dict)  # incident_id -> node_id
    applied: set[str] = field(default_factory=set)
    output: Any = None
    error: dict[str, Any] | None = None
    failed_node: str | None = None
    usage: dict[str, float] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # the trigger's source and dedup key while queued (flow control), for ExecutionStarted
    trigger_source: str | None = None
    dedup_key: str | None = None
    # node_id -> failed attempts that never reached the target (an open circuit breaker):
    # they are retried at the breaker's half-open time and use up no attempt
    deferrals: dict[str, int] = field(default_factory=dict)

    def clone(self) -> ExecutionState:
        """A copy whose containers can be changed without touching this one."""
        return ExecutionState(
            self.execution_id, self.workflow_id, self.workflow_version, self.tenant,
            self.correlation_id, self.phase, self.seq, self.input, dict(self.nodes),
            self.terminal, dict(self.loops), dict(self.timers), dict(self.incidents),
            set(self.applied), self.output, self.error, self.failed_node, dict(self.usage),
            self.started_at, self.finished_at, self.trigger_source, self.dedup_key,
            dict(self.deferrals),
        )  # fmt: skip

    def attempts_spent(self, node_id: str, attempt: int) -> int:
        """How many of a node's attempts up to ``attempt`` reached the target."""
        return attempt - self.deferrals.get(node_id, 0)

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_PHASES

    def retired(self) -> ExecutionState:
        """What `decide` still needs once the execution has finished: who it is, its phase,
        its seq and the ids of the inputs it applied (so a redelivered input stays a
        duplicate and a late one is ignored with the next seq). Inputs, outputs, node runs,
        loops and usage are dropped: they are in the log, and nothing decides on them again.
        """
        assert self.finished, f"{self.execution_id} is {self.phase}, not finished"
        return ExecutionState(
            self.execution_id, self.workflow_id, self.workflow_version, self.tenant,
            self.correlation_id, self.phase, self.seq, applied=self.applied,
            error=self.error, failed_node=self.failed_node,
            started_at=self.started_at, finished_at=self.finished_at,
        )  # fmt: skip

    @property
    def status(self) -> str:
        """pending, running, waiting (timer or event), incident, or the final phase."""
        if self.phase != "active":
            return self.phase
        if self.incidents:
            return "incident"
        waiting = False
        for run in self.nodes.values():
            if run.status in ACTIVE_TASK:
                return "running"
            if run.status in ("waiting", "retry_wait"):
                waiting = True
        return "waiting" if waiting else "running"

    # --- snapshots ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot; `from_dict(to_dict())` equals the state."""
        out = {
            "v": 1,
            "execution_id": self.execution_id,
            "workflow_id": self.workflow_id,
            "workflow_version": self.workflow_version,
            "tenant": self.tenant,
            "correlation_id": self.correlation_id,
            "phase": self.phase,
            "seq": self.seq,
            "input": self.input,
            "nodes": {k: _run_to_list(r) for k, r in self.nodes.items()},
            "terminal": self.terminal,
            "loops": {
                k: [lr.next_index, sorted(lr.active), [[i, o] for i, o in lr.outputs.items()]]
                for k, lr in self.loops.items()
            },
            "timers": {k: list(v) for k, v in self.timers.items()},
            "incidents": self.incidents,
            "applied": sorted(self.applied),
            "output": self.output,
            "error": self.error,
            "failed_node": self.failed_node,
            "usage": self.usage,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
        }
        if self.phase == "queued" or self.trigger_source is not None:  # flow control only
            out["trigger_source"] = self.trigger_source
            out["dedup_key"] = self.dedup_key
        if self.deferrals:
            out["deferrals"] = self.deferrals
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExecutionState:
        return cls(
            execution_id=data["execution_id"],
            workflow_id=data["workflow_id"],
            workflow_version=data["workflow_version"],
            tenant=data["tenant"],
            correlation_id=data["correlation_id"],
            phase=data["phase"],
            seq=data["seq"],
            input=data["input"],
            nodes={k: _run_from_list(v) for k, v in data["nodes"].items()},
            terminal=data["terminal"],
            loops={
                k: LoopRun(v[0], frozenset(v[1]), {int(i): o for i, o in v[2]})
                for k, v in data["loops"].items()
            },
            timers={k: (v[0], v[1], v[2], v[3]) for k, v in data["timers"].items()},
            incidents=dict(data["incidents"]),
            applied=set(data["applied"]),
            output=data["output"],
            error=data["error"],
            failed_node=data["failed_node"],
            usage=dict(data["usage"]),
            started_at=_from_iso(data["started_at"]),
            finished_at=_from_iso(data["finished_at"]),
            trigger_source=data.get("trigger_source"),
            dedup_key=data.get("dedup_key"),
            deferrals=dict(data.get("deferrals") or {}),
        )


def _run_to_list(run: NodeRun) -> list[Any]:
    if run.error is None and run.output is None:
        return [run.status, run.attempt]
    return [run.status, run.attempt, run.output, run.error]


def _run_from_list(data: list[Any]) -> NodeRun:
    if len(data) == 2:
        return NodeRun(data[0], data[1])
    return NodeRun(data[0], data[1], data[2], data[3])


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _from_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None
