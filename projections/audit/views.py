"""Pure views over one execution's events: state at a seq or a time, history, and diff.

Everything here takes a list of domain events in seq order (as folded by `evolve`) and
returns plain JSON-able values; nothing reads a store or a clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowlog.aggregates.execution import events as ev
from flowlog.aggregates.execution.events import event_to_dict
from flowlog.aggregates.execution.evolve import fold
from flowlog.aggregates.execution.state import ExecutionState
from flowlog.projections.audit.steps import recorded_steps

Events = Sequence[ev.ExecutionEvent]


def state_at(events: Events, seq: int) -> ExecutionState:
    """The state after the first `seq` events (0: before the first)."""
    return fold(events[:seq])


def seq_at_time(events: Events, at: datetime) -> int:
    """The seq of the last event that occurred at or before `at` (0 when none did)."""
    found = 0
    for e in events:
        if e.occurred_at <= at:
            found = e.seq
        else:
            break
    return found


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def state_view(state: ExecutionState) -> dict[str, Any]:
    """What a person asks about a state: status, node statuses and outputs, pending timers."""
    return {
        "execution_id": state.execution_id,
        "workflow_id": state.workflow_id,
        "workflow_version": state.workflow_version,
        "seq": state.seq,
        "phase": state.phase,
        "status": state.status,
        "input": state.input,
        "nodes": {
            node_id: {"status": run.status, "attempt": run.attempt, "output": run.output,
                      "error": run.error}
            for node_id, run in sorted(state.nodes.items())
        },
        "loops": {
            loop_id: {"next_index": lr.next_index, "active": sorted(lr.active),
                      "outputs": {str(i): o for i, o in sorted(lr.outputs.items())}}
            for loop_id, lr in sorted(state.loops.items())
        },
        "pending_timers": {
            timer_id: {"kind": kind, "node_id": node_id, "attempt": attempt, "due_at": due}
            for timer_id, (kind, node_id, attempt, due) in sorted(state.timers.items())
        },
        "incidents": dict(sorted(state.incidents.items())),
        "output": state.output,
        "error": state.error,
        "usage": dict(sorted(state.usage.items())),
        "started_at": _iso(state.started_at),
        "finished_at": _iso(state.finished_at),
    }


# --- diff ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Change:
    """One leaf that differs: `path` is dotted (`nodes.route.status`); a missing side is
    `None` with `added`/`removed` saying which."""

    path: str
    before: Any
    after: Any
    kind: str  # changed, added, removed

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "before": self.before,
                "after": self.after}


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dict leaves by dotted path; lists, scalars and empty dicts are leaves."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _walk(a: Any, b: Any, path: str, out: list[Change]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys(), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in b:
                out.append(Change(sub, a[key], None, "removed"))
            elif key not in a:
                out.append(Change(sub, None, b[key], "added"))
            else:
                _walk(a[key], b[key], sub, out)
    elif a != b or type(a) is not type(b):
        out.append(Change(path, a, b, "changed"))


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """Exactly the fields that differ between two views: a key only one side has is one
    `added`/`removed` change (with its whole value); a value that differs is `changed`."""
    out: list[Change] = []
    _walk(before, after, "", out)
    return out


# --- history -------------------------------------------------------------------------------




def node_runs(events: Events) -> list[dict[str, Any]]:
    """One row per node attempt: when it was scheduled, started and finished, and how."""
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    order: list[tuple[str, int]] = []
    current: dict[str, int] = {}

    def row(node_id: str, attempt: int) -> dict[str, Any]:
        key = (node_id, attempt)
        if key not in runs:
            runs[key] = {"node_id": node_id, "attempt": attempt, "node_type": None,
                         "status": "pending", "task_key": None, "input": None,
                         "scheduled_at": None, "started_at": None, "finished_at": None,
                         "duration_ms": None, "output": None, "error": None,
                         "model_calls": 0, "tool_calls": 0, "cost_usd": 0.0}
            order.append(key)
        current[node_id] = attempt
        return runs[key]

    def finish(r: dict[str, Any], e: ev.ExecutionEvent, status: str) -> None:
        r["status"], r["finished_at"] = status, e.occurred_at.isoformat()
        begun = r["scheduled_at"] or r["started_at"]
        if begun is not None:
            delta = e.occurred_at - datetime.fromisoformat(begun)
            r["duration_ms"] = int(delta.total_seconds() * 1000)

    for e in events:
        if isinstance(e, ev.NodeScheduled):
            r = row(e.node_id, e.attempt)
            r.update(node_type=e.node_type, status="scheduled", task_key=e.task_key,
                     input=e.input, scheduled_at=e.occurred_at.isoformat())
        elif isinstance(e, ev.NodeStarted):
            r = row(e.node_id, e.attempt)
            r.update(status="started", started_at=e.occurred_at.isoformat())
        elif isinstance(e, ev.NodeSucceeded):
            r = row(e.node_id, e.attempt)
            r["output"] = e.output
            finish(r, e, "succeeded")
        elif isinstance(e, ev.NodeFailed):
            r = row(e.node_id, e.attempt)
            r["error"] = e.error
            finish(r, e, "failed")
        elif isinstance(e, ev.NodeDeadLettered):
            row(e.node_id, e.attempt)["status"] = "dead_lettered"
        elif isinstance(e, ev.NodeSkipped):
            r = row(e.node_id, current.get(e.node_id, 0))
            finish(r, e, "skipped")
        elif isinstance(e, ev.BranchDecided):
            r = row(e.node_id, 1)
            r["output"] = {"branch": e.branch, "targets": list(e.targets)}
            finish(r, e, "succeeded")
        elif isinstance(e, ev.LoopIterationCompleted):
            iter_id = f"{e.node_id}[{e.index}]"
            r = row(iter_id, current.get(iter_id, 0))
            if r["status"] not in ("succeeded", "failed", "skipped"):
                r["output"] = e.output
                finish(r, e, "succeeded")
        elif isinstance(e, ev.AgentModelCalled):
            r = row(e.node_id, e.attempt)
            r["model_calls"] += 1
            r["cost_usd"] = round(r["cost_usd"] + e.cost_usd, 9)
        elif isinstance(e, ev.AgentToolCalled):
            row(e.node_id, e.attempt)["tool_calls"] += 1
    return [runs[k] for k in order]


def operator_commands(events: Events, commands: Mapping[str, dict[str, Any]] | None = None
                      ) -> list[dict[str, Any]]:
    """Commands an operator (or the dead-letter bridge) sent and what they did.

    Who and why come from the command records (`commands`, by event id: the command
    gateway's `flowlog-actor` and `flowlog-reason` headers, and the record's `reason`);
    without one, who is null and why is the cancel reason the execution events keep."""
    out: list[dict[str, Any]] = []
    for step in recorded_steps(events):
        if step.kind not in ("cancel", "retry", "resume"):
            continue
        i = step.input
        record = (commands or {}).get(step.cause or "") or {}
        why = record.get("header_reason") or record.get("reason") or \
            getattr(i, "reason", None) or None
        out.append({"command": type(i).__name__, "command_id": step.cause,
                    "at": step.at.isoformat(), "seq": step.first_seq,
                    "node_id": getattr(i, "node_id", None), "who": record.get("actor"),
                    "why": why, "effect": [e.event_type for e in step.events]})
    return out


def history(events: Events, commands: Mapping[str, dict[str, Any]] | None = None
            ) -> dict[str, Any]:
    """The full history: every event, node runs, model and tool calls, operator commands
    (with who and why from `commands`, the command records by event id)."""
    model_calls = [event_to_dict(e) for e in events if isinstance(e, ev.AgentModelCalled)]
    tool_calls = [event_to_dict(e) for e in events if isinstance(e, ev.AgentToolCalled)]
    last = fold(events)
    return {
        "execution_id": last.execution_id,
        "workflow_id": last.workflow_id,
        "workflow_version": last.workflow_version,
        "status": last.status,
        "events": [event_to_dict(e) for e in events],
        "node_runs": node_runs(events),
        "model_calls": model_calls,
        "tool_calls": tool_calls,
        "operator_commands": operator_commands(events, commands),
    }
