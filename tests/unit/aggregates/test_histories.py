"""Recorded execution histories: today's code must fold and re-decide them identically."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from flowlog.aggregates.definition import compile_definition, load_definition
from flowlog.aggregates.execution import ExecutionState, decide, evolve, fold
from flowlog.aggregates.execution.events import event_from_dict, event_to_dict

from tests.support.runs import HISTORIES, REPO, canonical, input_from_dict

pytestmark = pytest.mark.unit
FILES = sorted(HISTORIES.glob("*.json"))


def test_there_are_recorded_histories() -> None:
    assert len(FILES) >= 3


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_fold_reproduces_recorded_state(path: Path) -> None:
    doc = json.loads(path.read_text())
    state = fold(event_from_dict(e) for e in doc["events"])
    assert canonical(state.to_dict()) == canonical(doc["final_state"])


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_redeciding_recorded_inputs_gives_recorded_events(path: Path) -> None:
    doc = json.loads(path.read_text())
    definition = compile_definition(load_definition(REPO / doc["definition"]))
    state = ExecutionState()
    produced = []
    for item in doc["inputs"]:
        at, inp = input_from_dict(item)
        for e in decide(state, inp, at, definition):
            evolve(state, e)
            produced.append(canonical(event_to_dict(e)))
    assert produced == canonical(doc["events"])


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_a_retired_state_decides_late_and_redelivered_inputs_like_the_full_one(
        path: Path) -> None:
    doc = json.loads(path.read_text())
    definition = compile_definition(load_definition(REPO / doc["definition"]))
    full = fold(event_from_dict(e) for e in doc["events"])
    if not full.finished:
        pytest.skip("the recorded execution does not finish")
    retired = full.retired()
    assert not retired.nodes and not retired.input and retired.output is None
    inputs = [input_from_dict(item) for item in doc["inputs"]]
    late_at, late = inputs[-1]
    late = dataclasses.replace(late, event_id="late-input")
    for at, inp in [*inputs, (late_at, late)]:  # every input again, then one never seen
        a, b = decide(full, inp, at, definition), decide(retired, inp, at, definition)
        assert [canonical(event_to_dict(e)) for e in a] == \
            [canonical(event_to_dict(e)) for e in b]
        for e in a:
            evolve(full, e)
        for e in b:
            evolve(retired, e)
    assert retired.seq == full.seq and retired.applied == full.applied
