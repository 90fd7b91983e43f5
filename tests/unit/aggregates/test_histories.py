"""Recorded execution histories: today's code must fold and re-decide them identically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from agg_harness import HISTORIES, REPO, canonical, input_from_dict
from flowlog.aggregates.definition import compile_definition, load_definition
from flowlog.aggregates.execution import ExecutionState, decide, evolve, fold
from flowlog.aggregates.execution.events import event_from_dict, event_to_dict

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
