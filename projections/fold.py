"""The pure layer: execution events folded into read-model rows (no I/O, no clock).

    rows = Rows()                                    # or rows loaded from PostgreSQL
    result = fold_batch(rows, events, coords)        # domain events of one Kafka record
    result.changed_executions, result.events, ...    # what to write

Every projector, `rebuild` and `verify` use this one fold, so a read model always equals
the fold of the log. Rows are plain dicts keyed by column name (the tables' columns, see
`EXECUTION_COLUMNS` and friends), so the SQL layer writes them without mapping.

The seq guard lives here: an event whose seq is not past the execution's `last_seq` changes
nothing (a redelivered or re-written decision). An event the fold cannot apply (the first
event of an unknown execution is not a start, a gap in seq, a node event for a node the
execution never ran) raises `Reject` with the reason; the caller records it and goes on.

Execution status mirrors `ExecutionState.status` of the aggregate (pending, queued,
running, waiting, incident, or the final phase): tests/unit/projections check that on every
prefix of the recorded histories.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from flowlog.aggregates.execution import events as ev
from flowlog.schemas.model import canonical_json

Row = dict[str, Any]
NodeKey = tuple[str, str, int]  # execution_id, node_id, attempt

EXECUTION_COLUMNS: tuple[str, ...] = (
    "execution_id", "workflow_id", "workflow_version", "tenant", "status", "phase",
    "trigger_id", "trigger_source", "dedup_key", "correlation_id", "input", "output", "error",
    "failed_node", "node_status", "incidents", "created_at", "started_at", "finished_at",
    "duration_ms", "node_runs", "retries", "dead_letters", "model_calls", "tool_calls",
    "input_tokens", "output_tokens", "cost_usd", "last_seq", "last_event_at",
)
NODE_RUN_COLUMNS: tuple[str, ...] = (
    "execution_id", "node_id", "attempt", "node_type", "status", "task_key", "workflow_id",
    "tenant", "created_at", "scheduled_at", "started_at", "finished_at", "duration_ms",
    "error", "output_summary", "model", "model_calls", "tool_calls", "input_tokens",
    "output_tokens", "cost_usd", "last_seq",
)
EVENT_COLUMNS: tuple[str, ...] = (
    "execution_id", "seq", "event_id", "event_type", "occurred_at", "node_id", "causation_id",
    "correlation_id", "kafka_topic", "kafka_partition", "kafka_offset",
)
TRIGGER_COLUMNS: tuple[str, ...] = (
    "trigger_id", "execution_id", "workflow_id", "workflow_version", "tenant", "source",
    "dedup_key", "input", "outcome", "reason", "received_at",
)
LLM_CALL_COLUMNS: tuple[str, ...] = (
    "execution_id", "seq", "occurred_at", "workflow_id", "tenant", "node_id", "attempt",
    "provider", "model", "input_tokens", "output_tokens", "cost_usd", "latency_ms",
)
#: Columns holding JSON (written as JSON text, read back as values).
JSON_COLUMNS = frozenset({"input", "output", "error", "node_status", "incidents"})
FINAL_PHASES = frozenset({"succeeded", "failed", "cancelled", "rejected"})
_ACTIVE_TASK = frozenset({"scheduled", "started", "running"})
_TERMINAL_RUN = frozenset({"succeeded", "failed", "skipped", "dead_lettered"})
#: Longest output summary kept on a node run (canonical JSON, cut).
SUMMARY_CHARS = 200


class Reject(ValueError):
    """An event the read model cannot apply; the reason is what `projection_rejects` shows."""


@dataclass(frozen=True, slots=True)
class Coords:
    """Where a record came from in Kafka."""

    topic: str
    partition: int
    offset: int


@dataclass
class Rows:
    """The rows a fold reads and changes: executions by id, node runs by key."""

    executions: dict[str, Row] = field(default_factory=dict)
    node_runs: dict[NodeKey, Row] = field(default_factory=dict)


@dataclass
class FoldResult:
    """What one batch changed: keys of changed rows and the insert-only rows it made."""

    executions: set[str] = field(default_factory=set)
    node_runs: set[NodeKey] = field(default_factory=set)
    events: list[Row] = field(default_factory=list)
    triggers: list[Row] = field(default_factory=list)
    llm_calls: list[Row] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0


def status_of(x: Row) -> str:
    """The execution's status, as `ExecutionState.status` computes it."""
    phase = x["phase"]
    if phase != "active":
        return str(phase)
    if x["incidents"]:
        return "incident"
    waiting = False
    for status, _attempt in x["node_status"].values():
        if status in _ACTIVE_TASK:
            return "running"
        if status in ("waiting", "retry_wait"):
            waiting = True
    return "waiting" if waiting else "running"


def summary(value: Any) -> str | None:
    """A short text of a node output (canonical JSON, at most `SUMMARY_CHARS`)."""
    if value is None:
        return None
    text = canonical_json(value)
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


def _ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return int((end - start).total_seconds() * 1000)


def new_execution(e: ev.ExecutionEvent) -> Row:
    return {
        "execution_id": e.execution_id, "workflow_id": e.workflow_id,
        "workflow_version": e.workflow_version, "tenant": e.tenant, "status": "pending",
        "phase": "pending", "trigger_id": e.causation_id, "trigger_source": None,
        "dedup_key": None, "correlation_id": e.correlation_id, "input": None, "output": None,
        "error": None, "failed_node": None, "node_status": {}, "incidents": {},
        "created_at": e.occurred_at, "started_at": None, "finished_at": None,
        "duration_ms": None, "node_runs": 0, "retries": 0, "dead_letters": 0,
        "model_calls": 0, "tool_calls": 0, "input_tokens": 0, "output_tokens": 0,
        "cost_usd": 0.0, "last_seq": 0, "last_event_at": e.occurred_at,
    }  # fmt: skip


def _new_run(x: Row, e: ev.ExecutionEvent, node_id: str, attempt: int) -> Row:
    return {
        "execution_id": x["execution_id"], "node_id": node_id, "attempt": attempt,
        "node_type": None, "status": "pending", "task_key": None,
        "workflow_id": x["workflow_id"], "tenant": x["tenant"], "created_at": e.occurred_at,
        "scheduled_at": None, "started_at": None, "finished_at": None, "duration_ms": None,
        "error": None, "output_summary": None, "model": None, "model_calls": 0,
        "tool_calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0,
        "last_seq": 0,
    }  # fmt: skip


_STARTS = (ev.ExecutionStarted, ev.ExecutionQueued, ev.ExecutionRejected)


class _Fold:
    """Applies events to `Rows`, recording what changed in a `FoldResult`."""

    def __init__(self, rows: Rows, result: FoldResult,
                 saved: dict[NodeKey, Row | None] | None = None) -> None:
        self.rows = rows
        self.out = result
        #: node runs as they were before this record touched them (to undo a reject)
        self.saved: dict[NodeKey, Row | None] = saved if saved is not None else {}

    # --- node runs -------------------------------------------------------------------
    def _run(self, x: Row, e: ev.ExecutionEvent, node_id: str, attempt: int) -> Row:
        key = (x["execution_id"], node_id, attempt)
        run = self.rows.node_runs.get(key)
        if key not in self.saved:
            self.saved[key] = dict(run) if run is not None else None
        if run is None:
            run = self.rows.node_runs[key] = _new_run(x, e, node_id, attempt)
            x["node_runs"] += 1
        run["last_seq"] = e.seq
        self.out.node_runs.add(key)
        return run

    def _attempt(self, x: Row, node_id: str) -> int:
        cur = x["node_status"].get(node_id)
        return int(cur[1]) if cur is not None else 0

    def _set(self, x: Row, e: ev.ExecutionEvent, node_id: str, attempt: int, status: str,
             ) -> Row:
        """The node's current run becomes `status` (the execution's map and the run row)."""
        x["node_status"][node_id] = [status, attempt]
        run = self._run(x, e, node_id, attempt)
        run["status"] = status
        if status in _TERMINAL_RUN and run["finished_at"] is None:
            run["finished_at"] = e.occurred_at
            begin = run["started_at"] or run["scheduled_at"] or run["created_at"]
            run["duration_ms"] = _ms(begin, e.occurred_at)
        return run

    def _current_run(self, x: Row, e: ev.ExecutionEvent, node_id: str, attempt: int) -> Row:
        if (x["execution_id"], node_id, attempt) not in self.rows.node_runs:
            raise Reject(f"{e.event_type} seq {e.seq}: node {node_id!r} attempt {attempt} "
                         f"was never scheduled in execution {x['execution_id']}")
        return self._run(x, e, node_id, attempt)

    # --- one event -------------------------------------------------------------------
    def apply(self, e: ev.ExecutionEvent) -> bool:
        """Apply one event; False when the seq guard drops it (already applied)."""
        x = self.rows.executions.get(e.execution_id)
        if x is None:
            if not isinstance(e, _STARTS):
                raise Reject(f"{e.event_type} seq {e.seq} for unknown execution "
                             f"{e.execution_id} (its start was never projected)")
            x = self.rows.executions[e.execution_id] = new_execution(e)
        if e.seq <= x["last_seq"]:
            return False
        if e.seq != x["last_seq"] + 1:
            raise Reject(f"{e.event_type} seq {e.seq} of {e.execution_id} follows seq "
                         f"{x['last_seq']}: events {x['last_seq'] + 1}..{e.seq - 1} are missing")
        handler = _HANDLERS.get(type(e))
        if handler is None:
            raise Reject(f"{e.event_type} is not an event the read model knows")
        handler(self, x, e)
        x["last_seq"] = e.seq
        x["last_event_at"] = e.occurred_at
        self.out.executions.add(e.execution_id)
        return True

    # --- handlers --------------------------------------------------------------------
    def started(self, x: Row, e: ev.ExecutionStarted | ev.ExecutionQueued) -> None:
        queued = isinstance(e, ev.ExecutionQueued)
        first = x["last_seq"] == 0
        x["phase"] = "queued" if queued else "active"
        x["input"] = e.input
        x["trigger_source"] = e.trigger_source
        x["dedup_key"] = e.dedup_key
        if not queued:
            x["started_at"] = e.occurred_at
        if first:
            self._trigger(x, e, "queued" if queued else "started", None, e.trigger_source,
                          e.dedup_key, e.input)

    def rejected(self, x: Row, e: ev.ExecutionRejected) -> None:
        x["phase"] = "rejected"
        x["error"] = {"type": "Rejected", "message": e.reason}
        self._finish(x, e)
        if x["last_seq"] == 0:
            self._trigger(x, e, "rejected", e.reason, None, None, None)

    def _trigger(self, x: Row, e: ev.ExecutionEvent, outcome: str, reason: str | None,
                 source: str | None, dedup_key: str | None, input_: Any) -> None:
        self.out.triggers.append({
            "trigger_id": e.causation_id or e.execution_id, "execution_id": e.execution_id,
            "workflow_id": e.workflow_id, "workflow_version": e.workflow_version,
            "tenant": e.tenant, "source": source, "dedup_key": dedup_key, "input": input_,
            "outcome": outcome, "reason": reason, "received_at": e.occurred_at,
        })  # fmt: skip

    def _finish(self, x: Row, e: ev.ExecutionEvent) -> None:
        x["finished_at"] = e.occurred_at
        x["duration_ms"] = _ms(x["started_at"] or x["created_at"], e.occurred_at)

    def scheduled(self, x: Row, e: ev.NodeScheduled) -> None:
        run = self._set(x, e, e.node_id, e.attempt, "scheduled")
        run["node_type"] = e.node_type
        run["task_key"] = e.task_key
        run["scheduled_at"] = e.occurred_at

    def node_started(self, x: Row, e: ev.NodeStarted) -> None:
        old = x["node_status"].get(e.node_id)
        status = "started" if old is not None and old[0] == "scheduled" else "waiting"
        run = self._set(x, e, e.node_id, e.attempt, status)
        run["started_at"] = e.occurred_at

    def succeeded(self, x: Row, e: ev.NodeSucceeded) -> None:
        run = self._set(x, e, e.node_id, e.attempt, "succeeded")
        run["output_summary"] = summary(e.output)

    def failed(self, x: Row, e: ev.NodeFailed) -> None:
        run = self._set(x, e, e.node_id, e.attempt, "failed")
        run["error"] = e.error

    def retry(self, x: Row, e: ev.NodeRetryScheduled) -> None:
        if e.node_id not in x["node_status"]:
            raise Reject(f"NodeRetryScheduled seq {e.seq}: node {e.node_id!r} never ran")
        x["node_status"][e.node_id] = ["retry_wait", e.attempt]
        x["retries"] += 1
        self._current_run(x, e, e.node_id, e.attempt)

    def dead(self, x: Row, e: ev.NodeDeadLettered) -> None:
        run = self._set(x, e, e.node_id, e.attempt, "dead_lettered")
        run["error"] = e.error
        x["dead_letters"] += 1

    def skipped(self, x: Row, e: ev.NodeSkipped) -> None:
        self._set(x, e, e.node_id, self._attempt(x, e.node_id), "skipped")

    def branch(self, x: Row, e: ev.BranchDecided) -> None:
        run = self._set(x, e, e.node_id, 1, "succeeded")
        run["node_type"] = run["node_type"] or "condition"
        run["output_summary"] = summary({"branch": e.branch, "targets": list(e.targets)})

    def iter_started(self, x: Row, e: ev.LoopIterationStarted) -> None:
        if e.node_id not in x["node_status"]:
            run = self._set(x, e, e.node_id, 1, "running")
            run["node_type"] = "loop"

    def iter_done(self, x: Row, e: ev.LoopIterationCompleted) -> None:
        iter_id = f"{e.node_id}[{e.index}]"
        cur = x["node_status"].get(iter_id)
        if cur is None or cur[0] not in _TERMINAL_RUN:
            run = self._set(x, e, iter_id, self._attempt(x, iter_id), "succeeded")
            run["output_summary"] = summary(e.output)

    def timer_set(self, x: Row, e: ev.TimerSet) -> None:
        if e.kind == "delay" and e.node_id is not None:
            run = self._set(x, e, e.node_id, e.attempt or 1, "waiting")
            run["node_type"] = run["node_type"] or "delay"
            run["started_at"] = run["started_at"] or e.occurred_at

    def model_called(self, x: Row, e: ev.AgentModelCalled) -> None:
        run = self._current_run(x, e, e.node_id, e.attempt)
        for row in (x, run):
            row["model_calls"] += 1
            row["input_tokens"] += e.input_tokens
            row["output_tokens"] += e.output_tokens
            row["cost_usd"] = round(row["cost_usd"] + e.cost_usd, 9)
        run["model"] = e.model
        self.out.llm_calls.append({
            "execution_id": e.execution_id, "seq": e.seq, "occurred_at": e.occurred_at,
            "workflow_id": e.workflow_id, "tenant": e.tenant, "node_id": e.node_id,
            "attempt": e.attempt, "provider": e.provider, "model": e.model,
            "input_tokens": e.input_tokens, "output_tokens": e.output_tokens,
            "cost_usd": e.cost_usd, "latency_ms": e.latency_ms,
        })  # fmt: skip

    def tool_called(self, x: Row, e: ev.AgentToolCalled) -> None:
        run = self._current_run(x, e, e.node_id, e.attempt)
        x["tool_calls"] += 1
        run["tool_calls"] += 1

    def incident(self, x: Row, e: ev.IncidentRaised) -> None:
        x["incidents"][e.incident_id] = e.node_id

    def resolved(self, x: Row, e: ev.IncidentResolved) -> None:
        x["incidents"].pop(e.incident_id, None)
        if e.resolution == "resumed":
            cur = x["node_status"].get(e.node_id)
            if cur is None:
                raise Reject(f"IncidentResolved seq {e.seq}: node {e.node_id!r} never ran")
            self._set(x, e, e.node_id, int(cur[1]), "failed")

    def exec_succeeded(self, x: Row, e: ev.ExecutionSucceeded) -> None:
        x["phase"] = "succeeded"
        x["output"] = e.output
        self._finish(x, e)

    def exec_failed(self, x: Row, e: ev.ExecutionFailed) -> None:
        x["phase"] = "failed"
        x["error"] = e.error
        x["failed_node"] = e.node_id
        self._finish(x, e)

    def cancelled(self, x: Row, e: ev.ExecutionCancelled) -> None:
        x["phase"] = "cancelled"
        x["error"] = {"type": "Cancelled", "message": e.reason}
        self._finish(x, e)

    def nothing(self, x: Row, e: ev.ExecutionEvent) -> None:
        pass


_HANDLERS: dict[type[ev.ExecutionEvent], Any] = {
    ev.ExecutionStarted: _Fold.started, ev.ExecutionQueued: _Fold.started,
    ev.ExecutionRejected: _Fold.rejected, ev.NodeScheduled: _Fold.scheduled,
    ev.NodeStarted: _Fold.node_started, ev.NodeSucceeded: _Fold.succeeded,
    ev.NodeFailed: _Fold.failed, ev.NodeRetryScheduled: _Fold.retry,
    ev.NodeDeadLettered: _Fold.dead, ev.NodeSkipped: _Fold.skipped,
    ev.BranchDecided: _Fold.branch, ev.LoopIterationStarted: _Fold.iter_started,
    ev.LoopIterationCompleted: _Fold.iter_done, ev.TimerSet: _Fold.timer_set,
    ev.TimerFired: _Fold.nothing, ev.AgentModelCalled: _Fold.model_called,
    ev.AgentToolCalled: _Fold.tool_called, ev.InputIgnored: _Fold.nothing,
    ev.IncidentRaised: _Fold.incident, ev.IncidentResolved: _Fold.resolved,
    ev.ExecutionSucceeded: _Fold.exec_succeeded, ev.ExecutionFailed: _Fold.exec_failed,
    ev.ExecutionCancelled: _Fold.cancelled,
}  # fmt: skip
assert set(_HANDLERS) == set(ev.EVENT_TYPES.values()), "every execution event needs a handler"


def _node_id(e: ev.ExecutionEvent) -> str | None:
    node = getattr(e, "node_id", None)
    return node if isinstance(node, str) else None


def fold_record(rows: Rows, events: list[ev.ExecutionEvent], coords: Coords,
                result: FoldResult) -> None:
    """Fold the events of one `ExecutionEventBatch` record (one decision) into `rows`.

    All or nothing: on `Reject` the rows are as before this record (the caller keeps the
    record's other effects out too). Index rows carry the record's Kafka coordinates.
    """
    if not events:
        return
    ex_id = events[0].execution_id
    before_x = rows.executions.get(ex_id)
    saved_x = _copy_row(before_x) if before_x is not None else None
    saved_runs: dict[NodeKey, Row | None] = {}
    staged = FoldResult()
    fold = _Fold(rows, staged, saved_runs)
    try:
        for e in events:
            if e.execution_id != ex_id:
                raise Reject(f"a decision record mixes executions {ex_id} and {e.execution_id}")
            if fold.apply(e):
                staged.applied += 1
                staged.events.append({
                    "execution_id": e.execution_id, "seq": e.seq, "event_id": e.event_id,
                    "event_type": e.event_type, "occurred_at": e.occurred_at,
                    "node_id": _node_id(e), "causation_id": e.causation_id,
                    "correlation_id": e.correlation_id, "kafka_topic": coords.topic,
                    "kafka_partition": coords.partition, "kafka_offset": coords.offset,
                })  # fmt: skip
            else:
                staged.duplicates += 1
        x = rows.executions.get(ex_id)
        if x is not None:  # once per record: status walks every node of the execution
            x["status"] = status_of(x)
    except Reject:
        if saved_x is None:
            rows.executions.pop(ex_id, None)
        else:
            rows.executions[ex_id] = saved_x
        for key, old in saved_runs.items():
            if old is None:
                rows.node_runs.pop(key, None)
            else:
                rows.node_runs[key] = old
        raise
    result.executions |= staged.executions
    result.node_runs |= staged.node_runs
    result.events += staged.events
    result.triggers += staged.triggers
    result.llm_calls += staged.llm_calls
    result.applied += staged.applied
    result.duplicates += staged.duplicates


def _copy_row(row: Row) -> Row:
    out = dict(row)
    for k in ("node_status", "incidents"):
        if k in out and isinstance(out[k], dict):
            out[k] = {n: list(v) if isinstance(v, list) else v for n, v in out[k].items()}
    return out


def fold_all(records: Iterable[tuple[list[ev.ExecutionEvent], Coords]]
             ) -> tuple[Rows, FoldResult, list[tuple[Coords, str]]]:
    """A fresh fold of a whole log: the rows, every event/trigger/LLM row, and the
    rejects (coordinates and reason). What `verify` compares the tables with."""
    rows = Rows()
    result = FoldResult()
    rejects: list[tuple[Coords, str]] = []
    for events, coords in records:
        try:
            fold_record(rows, events, coords, result)
        except Reject as exc:
            rejects.append((coords, str(exc)))
    return rows, result, rejects


class RawJSON(str):
    """JSON text read from a table and written back unchanged (never parsed: the fold
    only ever replaces such values, it does not read them)."""


def json_text(value: Any) -> str | None:
    """A JSON column's text (canonical: sorted keys), None for SQL NULL."""
    if value is None:
        return None
    if isinstance(value, RawJSON):
        return value
    return canonical_json(value)


def json_value(text: Any) -> Any:
    return orjson.loads(text) if isinstance(text, str | bytes) else text
