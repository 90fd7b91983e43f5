"""`succeeding_history`: the execution history the rebuild's tests and benchmark share."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from flowlog.aggregates.definition import compile_definition, parse_definition
from flowlog.aggregates.execution import fold
from flowlog.streams.runtime.histories import History, succeeding_history

from flowlog.settings import REPO_ROOT

pytestmark = pytest.mark.unit
DAG = yaml.safe_load((REPO_ROOT / "examples" / "bench-5node.yaml").read_text())
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def five_node(finish: bool = True) -> History:
    ids = (f"00000000-0000-4000-8000-{n:012d}" for n in itertools.count(1))
    d = compile_definition(parse_definition({**DAG, "version": 1}))
    return succeeding_history(d, execution_id="ex-1", start=T0, new_id=lambda: next(ids),
                              step=timedelta(milliseconds=3), output={"ok": True},
                              finish=finish)


def test_a_finished_five_node_execution() -> None:
    h = five_node()
    types = [[e.event_type for e in x.events] for x in h.decisions]
    assert types[0] == ["ExecutionStarted", "NodeScheduled"]  # A
    assert sum(t.count("NodeScheduled") for t in types) == 5
    assert types[-1][-1] == "ExecutionSucceeded" and h.state.phase == "succeeded"
    events = [e for x in h.decisions for e in x.events]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # gap-free
    assert fold(events) == h.state  # the state is the fold of the events it returns
    # one decision per input: the trigger's id first, then one result per node
    assert [x.input_id[-2:] for x in h.decisions] == ["01", "02", "03", "04", "05", "06"]
    assert h.decisions[0].events[0].occurred_at == T0 + timedelta(milliseconds=3)


def test_time_and_ids_passed_in_make_it_the_same_history_twice() -> None:
    assert five_node().decisions == five_node().decisions


def test_unfinished_the_last_result_is_never_reported() -> None:
    done, running = five_node(), five_node(finish=False)
    assert running.decisions == done.decisions[:-1]
    assert not running.state.finished
    assert running.decisions[-1].events[-1].event_type == "NodeScheduled"  # E, waiting
