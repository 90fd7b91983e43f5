"""The audit and replay operations, as the CLI and the query API call them.

Each function takes the audit store (and, for replays, where definitions come from), checks
its input against what exists (raising `AuditInputError` that names both), and hands the
events to the pure modules: `views` (history, state, diff), `replay` (what-if, verify) and
`lineage`. Nothing here writes anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from flowlog.aggregates.definition.compiled import CompiledDefinition
from flowlog.aggregates.execution import events as ev
from flowlog.aggregates.execution.state import ExecutionState
from flowlog.projections.audit import lineage as lin
from flowlog.projections.audit import replay, views
from flowlog.projections.audit.errors import AuditInputError
from flowlog.projections.audit.store import AuditStore


class Definitions(Protocol):
    def get(self, workflow_id: str, version: int) -> CompiledDefinition | None: ...


Progress = Callable[[int, int], None]  # (done, total)


# --- points in an execution's history ------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Point:
    """A position given by a person: a seq (`12`) or a time (ISO 8601; UTC if naive)."""

    text: str
    seq: int | None = None
    at: datetime | None = None

    @classmethod
    def parse(cls, text: str) -> Point:
        value = text.strip()
        if value.isdigit():
            return cls(text, seq=int(value))
        try:
            at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise AuditInputError(
                f"{text!r} is neither a seq (a whole number such as 12) nor a time (ISO 8601 "
                "such as 2025-01-06T09:00:02Z)") from None
        return cls(text, at=at if at.tzinfo is not None else at.replace(tzinfo=UTC))


def parse_time(text: str, what: str = "--since") -> datetime:
    point = Point.parse(text)
    if point.at is None:
        raise AuditInputError(f"{what} {text!r} is not a time: give ISO 8601, such as "
                              "2025-01-06T09:00:00Z")
    return point.at


def _require_execution(store: AuditStore, execution_id: str) -> int:
    last = store.last_seq(execution_id)
    if last == 0:
        sample = store.executions(limit=5)
        hint = (f"for example {', '.join(sample)}" if sample
                else "the store is empty: is `flowlog worker audit` running?")
        raise AuditInputError(f"execution {execution_id!r} is not in the audit store ({hint})")
    return last


def workflow_of(store: AuditStore, execution_id: str) -> str:
    """The workflow an execution ran (AuditInputError when it is not stored)."""
    _require_execution(store, execution_id)
    return store.events(execution_id, upto=1)[0].workflow_id


def resolve(store: AuditStore, execution_id: str, point: Point, last: int) -> int:
    """The seq a point stands for, checked against the execution's 0..last."""
    if point.seq is not None:
        if point.seq > last:
            raise AuditInputError(f"seq {point.seq} is past the end of execution "
                                  f"{execution_id!r}: it has {last} events (seq 0..{last})")
        return point.seq
    assert point.at is not None
    seq = store.seq_at_time(execution_id, point.at)
    if seq == 0:
        first = store.events(execution_id, upto=1)[0].occurred_at
        raise AuditInputError(f"execution {execution_id!r} had no event by {point.text} "
                              f"(it started at {first.isoformat()})")
    return seq


# --- history, state, diff -------------------------------------------------------------------

def history(store: AuditStore, execution_id: str) -> dict[str, Any]:
    """Every event, node run, model and tool call and operator command of an execution."""
    _require_execution(store, execution_id)
    return views.history(store.events(execution_id), store.commands(execution_id))


def state(store: AuditStore, execution_id: str, at: str) -> dict[str, Any]:
    """The execution's state as of a seq or a time (snapshot + tail from the store)."""
    last = _require_execution(store, execution_id)
    seq = resolve(store, execution_id, Point.parse(at), last)
    found = store.state_at(execution_id, seq) if seq > 0 else None
    view = views.state_view(found if found is not None else ExecutionState())
    view["last_seq"] = last
    return view


def diff(store: AuditStore, execution_id: str, a: str, b: str) -> dict[str, Any]:
    """Exactly the fields that changed between two points (seqs or times)."""
    last = _require_execution(store, execution_id)
    sa = resolve(store, execution_id, Point.parse(a), last)
    sb = resolve(store, execution_id, Point.parse(b), last)
    events = store.events(execution_id, upto=max(sa, sb))
    before = views.state_view(views.state_at(events, sa))
    after = views.state_view(views.state_at(events, sb))
    lo, hi = sorted((sa, sb))
    return {"execution_id": execution_id, "from_seq": sa, "to_seq": sb,
            "changes": [c.to_dict() for c in views.diff(before, after)],
            "events_between": [e.event_type for e in events[lo:hi]]}


# --- replays ---------------------------------------------------------------------------------

def what_if(store: AuditStore, execution_id: str, definition: CompiledDefinition,
            recorded: Definitions | None = None) -> replay.WhatIf:
    """One execution's recorded inputs through `definition` (no side effects)."""
    _require_execution(store, execution_id)
    events = store.events(execution_id)
    first = events[0]
    if first.workflow_id != definition.workflow_id:
        raise AuditInputError(
            f"execution {execution_id!r} ran workflow {first.workflow_id!r}; the definition "
            f"given is {definition.workflow_id!r}")
    original = recorded.get(first.workflow_id, first.workflow_version) if recorded else None
    return replay.what_if(events, definition, original)


def _selected(store: AuditStore, workflow_id: str | None, since: datetime | None) -> list[str]:
    if workflow_id is not None and workflow_id not in store.workflows():
        known = store.workflows()
        raise AuditInputError(f"workflow {workflow_id!r} has no executions in the audit store "
                              f"(workflows there: {', '.join(known) or 'none'})")
    return store.executions(workflow_id, since)


def what_if_batch(store: AuditStore, workflow_id: str, since: datetime | None,
                  definition: CompiledDefinition, recorded: Definitions | None = None,
                  progress: Progress | None = None) -> replay.WhatIfSummary:
    """What-if over every stored execution of a workflow (since a time), summarised."""
    if definition.workflow_id != workflow_id:
        raise AuditInputError(f"--workflow {workflow_id!r} but the definition given is "
                              f"{definition.workflow_id!r}")
    ids = _selected(store, workflow_id, since)
    done = [0]

    def histories() -> Any:
        for execution_id in ids:
            yield execution_id, store.events(execution_id)

    def step(_: replay.WhatIf | None) -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], len(ids))

    return replay.what_if_many(
        histories(), definition,
        (lambda w, v: recorded.get(w, v)) if recorded is not None else (lambda w, v: None),
        on_done=step)


def verify(store: AuditStore, definitions: Definitions, workflow_id: str | None = None,
           since: datetime | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Re-decide stored histories with today's code; every execution whose recorded events
    differ, and those that could not be checked (their definition version is unknown)."""
    ids = _selected(store, workflow_id, since)
    mismatches: list[dict[str, Any]] = []
    unchecked: list[dict[str, Any]] = []
    for n, execution_id in enumerate(ids, 1):
        events = store.events(execution_id)
        first = events[0]
        definition = definitions.get(first.workflow_id, first.workflow_version)
        if definition is None:
            unchecked.append({"execution_id": execution_id, "reason":
                              f"definition {first.workflow_id} v{first.workflow_version} "
                              "not found"})
        else:
            found = replay.verify(events, definition)
            if found is not None:
                mismatches.append(found.to_dict())
        if progress is not None:
            progress(n, len(ids))
    return {"checked": len(ids) - len(unchecked), "differ": len(mismatches),
            "mismatches": mismatches, "unchecked": unchecked}


# --- lineage ---------------------------------------------------------------------------------

def lineage(store: AuditStore, item_id: str) -> dict[str, Any]:
    """What an event (or input, or execution) caused, and what caused it, as trees."""
    execution_id: str
    target: str | None
    if store.last_seq(item_id) > 0:
        execution_id, target = item_id, None
    elif (found := store.find_event(item_id)) is not None:
        execution_id, target = found[0], item_id
    elif causes := store.find_cause(item_id):
        execution_id, target = causes[0][0], item_id
    else:
        sample = store.executions(limit=3)
        raise AuditInputError(
            f"{item_id!r} is neither an execution id, an execution event id nor an input id "
            f"in the audit store (executions there, e.g.: {', '.join(sample) or 'none'})")
    events: list[ev.ExecutionEvent] = store.events(execution_id)
    graph = lin.Graph(events, store.children(execution_id))
    parent = lin.parent_of(events)
    out: dict[str, Any] = {"execution_id": execution_id, "item": item_id,
                           "correlation_id": events[0].correlation_id,
                           "parent_execution": parent,
                           "child_executions": sorted(graph.children.values()),
                           "caused": graph.forward(target).to_dict()}
    if target is not None:
        out["caused_by"] = graph.backward(target, parent).to_dict()
    return out
