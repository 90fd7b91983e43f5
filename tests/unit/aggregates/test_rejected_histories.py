"""A history today's code must reject (as Temporal's replayer rejects a history its
workflow code would not have produced): re-deciding its recorded inputs gives other
events, and the determinism check (`flowlog replay verify`) names the first seq that
differs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flowlog.aggregates.definition import compile_definition, load_definition
from flowlog.aggregates.execution import ExecutionState, decide, evolve
from flowlog.aggregates.execution.events import event_from_dict, event_to_dict
from flowlog.projections.audit.replay import verify

from tests.support.runs import REPO, canonical, input_from_dict

pytestmark = pytest.mark.unit
FILES = sorted((REPO / "tests" / "fixtures" / "rejected-histories").glob("*.json"))


def test_there_is_a_rejected_history() -> None:
    assert FILES


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_redeciding_a_rejected_history_differs_where_it_says(path: Path) -> None:
    doc = json.loads(path.read_text())
    definition = compile_definition(load_definition(REPO / doc["definition"]))
    state = ExecutionState()
    produced = []
    for item in doc["inputs"]:
        at, inp = input_from_dict(item)
        for e in decide(state, inp, at, definition):
            evolve(state, e)
            produced.append(canonical(event_to_dict(e)))
    recorded = canonical(doc["events"])
    first = next(i for i, (a, b) in enumerate(zip(produced, recorded, strict=False)) if a != b)
    assert recorded[first]["seq"] == doc["rejected_at_seq"], doc["why"]


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_the_determinism_check_names_the_seq(path: Path) -> None:
    doc = json.loads(path.read_text())
    definition = compile_definition(load_definition(REPO / doc["definition"]))
    mismatch = verify([event_from_dict(e) for e in doc["events"]], definition)
    assert mismatch is not None and mismatch.seq <= doc["rejected_at_seq"]
    assert any(e["seq"] == doc["rejected_at_seq"] for e in mismatch.recorded)
