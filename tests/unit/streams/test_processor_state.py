"""The processor's pure parts without Kafka: its per-partition fold, due-date checker,
finished-execution window, snapshots, and the task renderer it shares with the dispatcher.

Executions are driven the way `Processor._decide` drives them: decide on the partition's
state, `PartitionState.apply`, timers fired from `PartitionState.due` as `TimerFired`
inputs built by `records.timer_fired_record`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from flowlog.aggregates import records
from flowlog.aggregates.definition import compile_definition, parse_definition
from flowlog.aggregates.definition.compiled import CompiledDefinition
from flowlog.aggregates.execution import ExecutionState, decide, fold
from flowlog.aggregates.execution import events as dev
from flowlog.aggregates.execution import inputs as dinp
from flowlog.schemas.codec import Codec
from flowlog.streams.runtime.processor import decode_snapshot, encode_snapshot
from flowlog.streams.runtime.processor_state import PartitionState
from flowlog.streams.runtime.taskrender import TaskRenderer

pytestmark = pytest.mark.unit
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DEFINITION = """
id: proc-test
inputs:
  records: {type: array, required: true}
nodes:
  each:
    type: loop
    for_each: inputs.records
    do:
      type: tool
      tool: crm.enrich
      input: {record: item}
      retry: {max_attempts: 2, initial_delay: 1s}
  pause: {type: delay, needs: [each], duration: 2s}
  last: {type: tool, tool: noop, needs: [pause]}
"""


def definition() -> CompiledDefinition:
    return compile_definition(parse_definition(yaml.safe_load(DEFINITION)))


class Driver:
    """Executions on one partition, inputs decided as the processor decides them."""

    def __init__(self, window: int = 100) -> None:
        self.d = definition()
        self.st = PartitionState(0, window)
        self.log: list[dev.ExecutionEvent] = []
        self.now = T0

    def send(self, eid: str, inp: dinp.Input) -> list[dev.ExecutionEvent]:
        state = self.st.get(eid)
        events = decide(state, inp, self.now, self.d)
        if events:
            self.st.apply(state, events)
            self.log += events
        return events

    def trigger(self, eid: str, items: list[str]) -> list[dev.ExecutionEvent]:
        return self.send(eid, dinp.TriggerReceived(
            event_id=f"t-{eid}", execution_id=eid, workflow_id="proc-test",
            workflow_version=1, input={"records": items}))

    def fire_due(self) -> list[dev.ExecutionEvent]:
        out: list[dev.ExecutionEvent] = []
        for eid, timer_id, (kind, node_id, attempt, due_iso) in self.st.due(self.now):
            state = self.st.get(eid)
            record = records.timer_fired_record(
                execution_id=eid, workflow_id=state.workflow_id,
                workflow_version=state.workflow_version, tenant=state.tenant,
                correlation_id=state.correlation_id, timer_id=timer_id, kind=kind,
                node_id=node_id, attempt=attempt, due_at=datetime.fromisoformat(due_iso),
                occurred_at=self.now)
            out += self.send(eid, records.record_to_input("TimerFired", record))
        return out

    def run(self, eid: str, items: list[str], fail_first: bool = True) -> None:
        """Trigger and answer every task (the first attempt of each[0] fails once)."""
        pending = [e for e in self.trigger(eid, items) if isinstance(e, dev.NodeScheduled)]
        while True:
            while pending:
                e = pending.pop(0)
                failed = fail_first and e.node_id == "each[0]" and e.attempt == 1
                evs = self.send(eid, dinp.NodeResultReported(
                    event_id=f"r-{e.task_key}", node_id=e.node_id, attempt=e.attempt,
                    status="failed" if failed else "succeeded",
                    output=None if failed else {"ok": e.node_id},
                    error={"type": "Boom", "message": "x"} if failed else None,
                    task_key=e.task_key, started_at=self.now, finished_at=self.now))
                pending += [x for x in evs if isinstance(x, dev.NodeScheduled)]
            if self.st.get(eid).finished:
                return
            self.now += timedelta(seconds=5)
            fired = self.fire_due()
            assert fired, f"{eid} stuck: {self.st.get(eid).status}"
            pending += [x for x in fired if isinstance(x, dev.NodeScheduled)]

    def events_of(self, eid: str) -> list[dev.ExecutionEvent]:
        return [e for e in self.log if e.execution_id == eid]


def test_timers_fire_from_the_partition_state_and_executions_finish() -> None:
    drv = Driver()
    for i in range(3):
        drv.run(f"e{i}", ["a", "b"])
    for i in range(3):
        events = drv.events_of(f"e{i}")
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        kinds = [e.kind for e in events if isinstance(e, dev.TimerFired)]
        assert sorted(kinds) == ["delay", "retry"], kinds
        assert events[-1].event_type == "ExecutionSucceeded"
        # what the partition keeps is the retired fold of the log
        assert drv.st.states[f"e{i}"] == fold(events).retired()
    assert not drv.st.items  # loop items leave with their execution
    assert drv.st.due(drv.now + timedelta(days=1)) == []  # nothing left armed


def test_a_timer_disarmed_or_fired_is_not_fired_again() -> None:
    drv = Driver()
    drv.trigger("x", ["a"])
    scheduled = next(e for e in drv.log if isinstance(e, dev.NodeScheduled))
    drv.send("x", dinp.NodeResultReported(
        event_id="r1", node_id=scheduled.node_id, attempt=1, status="failed",
        error={"type": "Boom", "message": "x"}, task_key=scheduled.task_key,
        started_at=T0, finished_at=T0))
    drv.now += timedelta(seconds=5)
    assert len(drv.fire_due()) > 0
    assert drv.fire_due() == []  # popped once; re-armed only by a new TimerSet


def test_the_finished_window_bounds_memory_and_late_inputs_yield_nothing() -> None:
    drv = Driver(window=2)
    for i in range(5):
        drv.run(f"e{i}", ["a"], fail_first=False)
    assert list(drv.st.finished) == ["e3", "e4"]
    assert set(drv.st.states) == {"e3", "e4"}
    assert drv.st.evicted == 3
    late = dinp.CancelRequested(event_id="late", reason="too late")
    assert drv.send("e0", late) == []  # evicted: an unknown execution, no events
    kept = drv.send("e4", late)  # still in the window: recorded as ignored, next seq
    assert [e.event_type for e in kept] == ["InputIgnored"]
    assert drv.send("e4", late) == []  # and deduplicated


def test_snapshot_round_trip_and_replay_of_the_tail() -> None:
    drv = Driver()
    drv.run("done", ["a", "b"])
    drv.trigger("open", ["a", "b", "c"])  # unfinished: armed nothing yet, tasks out
    first = next(e for e in drv.log if isinstance(e, dev.NodeScheduled)
             and e.execution_id == "open")
    drv.send("open", dinp.NodeResultReported(
        event_id="r-open", node_id=first.node_id, attempt=1, status="failed",
        error={"type": "Boom", "message": "x"}, task_key=first.task_key,
        started_at=drv.now, finished_at=drv.now))  # arms a retry timer
    drv.st.events_offset = 42
    snap = decode_snapshot(encode_snapshot(drv.st), window=100)
    assert snap.events_offset == 42
    # finished executions come back lazily (as their snapshot dicts, built on first use)
    assert "done" not in snap.states and len(snap) == len(drv.st.states)
    assert {eid: snap.get(eid) for eid in drv.st.states} == drv.st.states
    assert "done" in snap.states
    assert snap.items == drv.st.items and snap.items["open"]
    assert list(snap.finished) == ["done"]
    later = drv.now + timedelta(seconds=5)
    assert [t[:2] for t in snap.due(later)] == [t[:2] for t in drv.st.due(later)]

    # a rebuild from the log alone (with a re-written batch) gives the same states
    rebuilt = PartitionState(0, 100)
    for e in drv.log + drv.log[:5]:
        rebuilt.replay(e)
    assert rebuilt.states == drv.st.states
    assert rebuilt.items == drv.st.items


def test_a_snapshot_of_another_version_is_refused() -> None:
    data = PartitionState(0, 10).to_snapshot()
    data["v"] = 99
    with pytest.raises(ValueError, match="rebuild from the log"):
        PartitionState.from_snapshot(data, 10)


def test_the_renderer_renders_items_and_reports_what_cannot_be_issued() -> None:
    drv = Driver()
    drv.trigger("r", ["apple"])
    codec = Codec()
    state: ExecutionState = drv.st.get("r")
    sched = next(e for e in drv.log if isinstance(e, dev.NodeScheduled))
    batch = records.batch_record([e for e in drv.log if e.execution_id == "r"], "t-r")
    r = next(x for x in batch["events"] if x["event_type"] == "NodeScheduled")
    renderer = TaskRenderer(30_000)
    name, task = renderer.render(r, drv.d, drv.st.item("r", sched.node_id), T0)
    assert name == "NodeTaskIssued"
    assert task["event_id"] == records.task_event_id(sched.task_key)
    assert '"record":"apple"' in task["input"] and '"tool":"crm.enrich"' in task["config"]
    codec.encode(name, task)  # a valid record
    name, result = renderer.render(r, None, None, T0)
    assert name == "NodeResultReported"
    assert result["status"] == "failed" and result["error"]["retryable"] is False
    assert "unknown" in result["error"]["message"]
    codec.encode(name, result)
    assert state.phase == "active"


def test_lazy_finished_states_survive_a_second_snapshot_and_leave_with_the_window() -> None:
    drv = Driver()
    for i in range(3):
        drv.run(f"e{i}", ["a"])
    first = decode_snapshot(encode_snapshot(drv.st), window=100)
    assert len(first) == 3 and not first.states  # all lazy
    # a snapshot of a state read from a snapshot holds the lazy ones unchanged
    second = decode_snapshot(encode_snapshot(first), window=100)
    assert {f"e{i}": second.get(f"e{i}") for i in range(3)} == drv.st.states
    # a smaller window drops the oldest lazy ones; a replayed late event of a lazy
    # execution finds its retired state (a duplicate seq: skipped, not a new execution)
    small = decode_snapshot(encode_snapshot(drv.st), window=2)
    assert len(small) == 2 and small.get("e0") == ExecutionState()
    late = next(e for e in drv.log if e.execution_id == "e2")
    assert small.replay(late) is False
    assert small.get("e2") == drv.st.states["e2"]


def test_unanswered_tasks_of_the_tail_are_those_still_waiting_for_their_attempt() -> None:
    """at_least_once rebuild: of the tail's NodeScheduled records, only the attempts with no
    result yet are issued again (a finished execution's, an answered or superseded attempt's
    are not)."""
    drv = Driver()
    drv.run("done", ["a"])

    def tail() -> dict[str, dict[str, dict[str, object]]]:
        out: dict[str, dict[str, dict[str, object]]] = {}
        for e in drv.log:  # the wire records, as the rebuild reads them (last per node)
            if isinstance(e, dev.NodeScheduled):
                r = records.batch_record([e], "x")["events"][0]
                out.setdefault(e.execution_id, {})[e.node_id] = r
        return out

    first = [e for e in drv.trigger("open", ["a", "b"]) if isinstance(e, dev.NodeScheduled)]
    assert [(e.node_id, e.attempt) for e in first] == [("each[0]", 1)]
    assert [(r["execution_id"], r["node_id"], r["attempt"])
            for r in drv.st.unanswered(tail())] == [("open", "each[0]", 1)]
    attempt_1 = tail()
    drv.send("open", dinp.NodeResultReported(  # answered: failed, a retry armed
        event_id="r-open-0", node_id="each[0]", attempt=1, status="failed",
        error={"type": "Boom", "message": "x"}, task_key=first[0].task_key,
        started_at=drv.now, finished_at=drv.now))
    assert drv.st.unanswered(tail()) == []
    drv.now += timedelta(seconds=5)
    retried = [e for e in drv.fire_due() if isinstance(e, dev.NodeScheduled)]
    assert [(e.node_id, e.attempt) for e in retried] == [("each[0]", 2)]
    assert drv.st.unanswered(attempt_1) == []  # a superseded attempt is not issued
    assert [(r["node_id"], r["attempt"]) for r in drv.st.unanswered(tail())] == [
        ("each[0]", 2)]
    assert drv.st.unanswered({"unknown": tail()["open"]}) == []
    assert "done" in tail() and all(r["execution_id"] != "done"
                                    for r in drv.st.unanswered(tail()))
