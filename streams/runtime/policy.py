"""What each role decides about one input, as pure functions (no I/O, no clock, no Kafka).

The roles (orchestrator, processor, dispatcher, executor) read a record, ask a function
here what to do with it, and do the I/O; so every per-input rule is one function with a
table of unit tests (tests/unit/streams/runtime/test_role_policy.py), and the role classes
are only plumbing (test_roles_agree.py checks the orchestrator and the processor decide
alike).

Orchestrator and processor
    `input_execution_id` (is it an input, keyed by its execution id?), `needs_catch_up`,
    `input_terms` (the pinned version and definition, `accepting`, the admission queue),
    `pin_version`, `accepts`, `admission_queue`, `no_events_reason`.
Dispatcher (its flow-control rules also the processor's)
    `seq_step` (apply, repeat, gap, or a finished execution), `issues_tasks`,
    `record_topic`, `flow_controlled`, `flow_step`, `workflow_limit`, `admission_entry`.
Executor
    `task_action` (run, re-publish, already running, quarantine), `admit_window`,
    `resend_delay`, `safe_offset`, `commit_due`.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from flowlog.aggregates import records
from flowlog.aggregates.execution import ExecutionState
from flowlog.streams.runtime.admission import Entry

# --- orchestrator ----------------------------------------------------------------------------


class WorkflowView(Protocol):
    """What the policy reads of a workflow in the definitions registry."""

    @property
    def versions(self) -> Mapping[int, Any]: ...

    @property
    def status(self) -> str: ...


@dataclass(frozen=True, slots=True)
class InputTerms:
    """What `decide` is given besides the input and the state."""

    definition: tuple[str, int] | None  # (workflow, version) to look up; None: none
    version: int | None  # the version a trigger pins (None: not a trigger)
    accepting: bool  # False: the workflow takes no new executions (the trigger is rejected)
    queue: bool | None  # True: every accepted trigger queues; None: as its definition says


#: The terms of an input whose execution has not started (nothing to look up).
NOT_STARTED = InputTerms(None, None, True, None)


def input_execution_id(name: str, record: Mapping[str, Any], key: bytes | None) -> str:
    """The execution id of an orchestrator input; `records.WireError` (quarantine it) when
    the record is not an input or is keyed by something else."""
    if name not in records.INPUT_NAMES:
        raise records.WireError(f"{name} is not an orchestrator input")
    execution_id = str(record["execution_id"])
    if key is not None and key.decode(errors="replace") != execution_id:
        raise records.WireError(
            f"key {key!r} is not the execution id {execution_id!r}: keyed wrong, "
            "the record may sit on another execution's partition")
    return execution_id


def needs_catch_up(name: str, record: Mapping[str, Any], known: Container[str]) -> bool:
    """A trigger of a workflow the registry does not know: maybe defined a moment ago, so
    the registry catches up with its topic (bounded) before the trigger is decided."""
    return name == "TriggerReceived" and record["workflow_id"] not in known


def pin_version(requested: int, versions: Collection[int] | None) -> int:
    """The version a trigger pins: its own when it names one (> 0), else the newest the
    registry holds (0 when the workflow has none); ``versions`` None: unknown workflow."""
    if requested > 0 or versions is None:
        return requested
    return max(versions, default=0)


def accepts(status: str | None) -> bool:
    """Whether a workflow in ``status`` (None: unknown) starts new executions: only an
    active one does (draft, paused and archived reject)."""
    return status == "active"


def admission_queue(tenant_limit: int) -> bool | None:
    """Flow control of a trigger: with a tenant limit every execution is queued and
    admitted (True); without one the definition's `concurrency` decides (None)."""
    return True if tenant_limit > 0 else None


def input_terms(name: str, record: Mapping[str, Any], state: ExecutionState,
                workflow: WorkflowView | None, tenant_limit: int) -> InputTerms:
    """The terms of one input: a trigger pins a version of ``workflow`` (the registry's
    entry for its workflow id, None if unknown); any other input uses its execution's
    pinned version, or nothing if the execution never started."""
    if name == "TriggerReceived":
        version = pin_version(int(record["workflow_version"]),
                              None if workflow is None else workflow.versions.keys())
        return InputTerms((str(record["workflow_id"]), version), version,
                          accepts(None if workflow is None else workflow.status),
                          admission_queue(tenant_limit))
    if state.phase == "pending":
        return NOT_STARTED
    return InputTerms((state.workflow_id, state.workflow_version), None, True, None)


def no_events_reason(name: str, phase: str) -> Literal["unknown_execution", "duplicates"]:
    """Why an input decided nothing: an input other than a trigger for an execution this
    partition does not know (never expected), or an input already applied."""
    if phase == "pending" and name != "TriggerReceived":
        return "unknown_execution"
    return "duplicates"


# --- dispatcher ------------------------------------------------------------------------------

SeqStep = Literal["apply", "repeat", "gap", "finished"]


def seq_step(last_seq: int | None, seq: int, finished: bool) -> SeqStep:
    """What an execution event of sequence number ``seq`` is to the dispatcher.

    ``last_seq``: the last seq applied (None: the execution is not kept); ``finished``:
    it finished recently. `apply` the next one; `repeat` one already applied (re-written);
    `gap` one that skips seqs (logged, not applied); `finished` a late event of a finished
    execution (ignored).
    """
    if last_seq is None:
        if finished:
            return "finished"
        return "apply" if seq == 1 else "gap"
    if seq <= last_seq:
        return "repeat"
    return "apply" if seq == last_seq + 1 else "gap"


def issues_tasks(offset: int, resume_at: int) -> bool:
    """Whether a `NodeScheduled` at ``offset`` is issued as a task: only at or after the
    committed offset (the replay before it only rebuilds the timers; those were issued)."""
    return offset >= resume_at


def record_topic(name: str) -> Literal["node-tasks", "node-results"]:
    """Where a rendered task record goes: a task to node-tasks, the failed result of a task
    that could not be issued straight to node-results."""
    return "node-tasks" if name == "NodeTaskIssued" else "node-results"


def flow_controlled(event_type: str, limited: bool) -> bool:
    """Whether an execution is under flow control after this event: from its
    `ExecutionQueued` on, until it is released."""
    return limited or event_type == "ExecutionQueued"


def flow_step(phase: str, finished: bool) -> Literal["enqueue", "release"] | None:
    """What an execution under flow control asks of admission after a batch: a queued one
    waits for a slot, a finished one frees its slot (or leaves the queue)."""
    if phase == "queued":
        return "enqueue"
    if finished:
        return "release"
    return None


def workflow_limit(definition: Any) -> int | None:
    """The per-workflow limit of a pinned definition (`concurrency.max_executions`); None:
    unlimited, or the definition is unknown (then only a tenant limit applies)."""
    return None if definition is None else definition.max_executions


def admission_entry(execution_id: str, workflow_id: str, workflow_version: int,
                    tenant: str) -> Entry:
    """The admission entry of an execution: it waits in its workflow's queue and counts
    against its tenant's slots (the tenant of its trigger)."""
    return Entry(execution_id, workflow_id, workflow_version, tenant)


# --- executor --------------------------------------------------------------------------------

TaskAction = Literal["quarantine", "republish", "already_running", "run"]


def task_action(is_task: bool, finished_here: bool, running_here: bool) -> TaskAction:
    """What the executor does with a node-tasks record: quarantine what is not a task;
    re-publish the stored result of a task key that finished in this process; skip a copy
    of a task key still running (the running one holds the offset back); else run it."""
    if not is_task:
        return "quarantine"
    if finished_here:
        return "republish"
    if running_here:
        return "already_running"
    return "run"


def admit_window(max_inflight: int, running: int) -> int:
    """How many tasks the next poll may fetch: the free slots (0: pause the partitions)."""
    return max(0, max_inflight - running)


#: A result whose send failed is sent again this many times before the role gives up.
RESENDS = 2


def resend_delay(attempt: int) -> float | None:
    """Seconds before re-sending a result whose send failed for the ``attempt``-th time
    counted from 0 (0.5 s, then 1 s); None: give up (the role stops, the task re-runs)."""
    if attempt >= RESENDS:
        return None
    return 0.5 * (attempt + 1)


def safe_offset(running: Collection[int], next_offset: int | None) -> int | None:
    """The offset a partition may commit: the lowest task still running (its result is not
    acknowledged), else the offset after the last one read (None: nothing read yet)."""
    return min(running) if running else next_offset


def commit_due(now: float, last_commit: float, interval_s: float, force: bool) -> bool:
    """Whether to commit now: at most once per ``interval_s``, or at once when forced (a
    revocation)."""
    return force or now - last_commit >= interval_s
