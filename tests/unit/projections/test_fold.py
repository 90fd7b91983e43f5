"""The pure fold: recorded histories become rows whose status follows the aggregate's on
every prefix; duplicates change nothing; bad input is rejected with a reason, all or
nothing."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
from flowlog.aggregates.execution import ExecutionState, evolve
from flowlog.aggregates.execution.events import event_from_dict
from flowlog.projections.fold import Coords, FoldResult, Reject, Rows, fold_all, fold_record

pytestmark = pytest.mark.unit
HISTORIES = Path(__file__).resolve().parents[2] / "fixtures" / "histories"
FILES = sorted(HISTORIES.glob("*.json"))


def _events(path: Path) -> list:
    return [event_from_dict(e) for e in json.loads(path.read_text())["events"]]


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_status_follows_the_aggregate_on_every_prefix(path: Path) -> None:
    events = _events(path)
    state = ExecutionState()
    rows = Rows()
    for n, e in enumerate(events):
        evolve(state, e)
        fold_record(rows, [e], Coords("t", 0, n), FoldResult())
        x = rows.executions[e.execution_id]
        assert x["status"] == state.status, (n, e.event_type)
        assert x["last_seq"] == state.seq
    assert x["node_status"] == {k: [r.status, r.attempt] for k, r in state.nodes.items()}
    assert x["input_tokens"] == state.usage.get("input_tokens", 0)
    assert x["finished_at"] == state.finished_at


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_duplicates_and_redelivery_change_nothing(path: Path) -> None:
    events = _events(path)
    once, _, rejects = fold_all([([e], Coords("t", 0, i)) for i, e in enumerate(events)])
    assert not rejects
    # the same decisions delivered twice, and a prefix re-written later
    twice_log = [([e], Coords("t", 0, i)) for i, e in enumerate(events)]
    twice_log += [(events[: len(events) // 2], Coords("t", 0, 999)), *twice_log]
    twice, result, rejects = fold_all(twice_log)
    assert not rejects
    assert twice == once
    assert len(result.events) == len(events)
    assert result.duplicates == len(events) + len(events) // 2


def test_node_runs_of_the_triage_history() -> None:
    rows, result, _ = fold_all([(_events(HISTORIES / "support_triage_billing.json"),
                                 Coords("t", 1, 7))])
    runs = {k[1]: r for k, r in rows.node_runs.items()}
    assert runs["classify"]["node_type"] == "agent"
    assert runs["classify"]["model_calls"] == 1 and runs["classify"]["tool_calls"] == 1
    assert runs["classify"]["status"] == "succeeded"
    assert runs["classify"]["duration_ms"] == 2000
    assert runs["file_issue"]["status"] == "skipped"
    assert runs["route"]["output_summary"] == '{"branch":"billing","targets":["refund_check"]}'
    assert {e["kafka_offset"] for e in result.events} == {7}
    assert result.triggers[0]["trigger_id"] == "trigger-1"
    assert len(result.llm_calls) == 1


def test_unknown_execution_and_gap_are_rejected_all_or_nothing() -> None:
    events = _events(HISTORIES / "support_triage_billing.json")
    rows = Rows()
    with pytest.raises(Reject, match="unknown execution"):
        fold_record(rows, events[3:5], Coords("t", 0, 1), FoldResult())
    assert rows == Rows()
    fold_record(rows, events[:2], Coords("t", 0, 2), FoldResult())
    before = copy.deepcopy(rows)
    with pytest.raises(Reject, match="missing"):
        fold_record(rows, [events[2], events[5]], Coords("t", 0, 3), FoldResult())
    assert rows == before  # the record's first event was undone too
    bad = dataclasses.replace(events[3], node_id="nope", seq=3)
    with pytest.raises(Reject, match="never scheduled"):
        fold_record(rows, [bad], Coords("t", 0, 4), FoldResult())
    assert rows == before


def test_a_rejected_record_undoes_its_node_run_changes() -> None:
    events = _events(HISTORIES / "support_triage_billing.json")
    rows = Rows()
    fold_record(rows, events[:3], Coords("t", 0, 1), FoldResult())  # seq 1..3
    before = copy.deepcopy(rows)
    # seq 4 (a model call: tokens on classify's run), then seq 7: a gap
    with pytest.raises(Reject, match="missing"):
        fold_record(rows, [events[3], events[6]], Coords("t", 0, 2), FoldResult())
    assert rows == before
    fold_record(rows, events[3:], Coords("t", 0, 3), FoldResult())
    assert rows.executions["triage-1"]["status"] == "succeeded"
