"""Search attributes, pure part: declarations refused with messages that name field, value
and fix; the activation over a recorded history; typing of results and of filter values."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flowlog.aggregates.execution.events import ExecutionEvent, event_from_dict
from flowlog.projections import search_attributes as sa

HISTORY = Path(__file__).resolve().parents[2] / "fixtures" / "histories"


def recorded(name: str) -> list[ExecutionEvent]:
    doc = json.loads((HISTORY / f"{name}.json").read_text())
    return [event_from_dict(e) for e in doc["events"]]


@pytest.mark.parametrize(("name", "type_", "expr", "words"), [
    ("Tier", "keyword", '"x"', ["'Tier'", "lowercase"]),
    ("status", "keyword", '"x"', ["'status'", "built-in filter", "status_attr"]),
    ("tier", "text", '"x"', ["'text'", "keyword, int, double, bool, datetime"]),
    ("tier", "int", "1 +", ["does not compile", "'1 +'"]),
    ("tier", "int", "now.seconds", ["reads now", "events", "execution"]),
    ("tier", "int", "nope(1)", ["calls nope"]),
    ("tier", "int", "execution.status", ["declared int", "str 'succeeded'", "int(...)",
                                         "declare the type keyword"]),
    ("tier", "bool", "execution.cost_usd", ["declared bool", "float", "type double"]),
    ("tier", "datetime", "execution.status", ["timestamp(...)"]),
])
def test_bad_declarations_are_refused_with_the_fix(name: str, type_: str, expr: str,
                                                    words: list[str]) -> None:
    with pytest.raises(sa.SearchAttributeError) as info:
        sa.declaration(name, type_, expr)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_activation_of_a_recorded_history() -> None:
    events = recorded("support_triage_billing")
    act = sa.activation(events)
    x = act["execution"]
    assert x["status"] == "succeeded" and x["last_seq"] == events[-1].seq
    assert x["model_calls"] >= 1 and x["cost_usd"] > 0
    assert x["created_at"] == events[0].occurred_at and x["finished_at"] is not None
    assert [e["seq"] for e in act["events"]] == [e.seq for e in events]
    decl = sa.declaration("models", "keyword", 'events.filter(e, e.type == '
                          '"AgentModelCalled").map(e, e.data.model)[0]')
    out = sa.evaluate(decl, act, "x")
    assert out.error is None and isinstance(out.value, str)
    # the same history evaluates to the same value (idempotent)
    assert sa.evaluate(decl, sa.activation(recorded("support_triage_billing")), "x") == out


def test_running_execution_has_no_finish_time() -> None:
    events = recorded("delay_and_wait_approved")[:3]
    decl = sa.declaration("done_at", "datetime", "execution.finished_at")
    assert sa.evaluate(decl, sa.activation(events), "x") == sa.Outcome(None, None)


def test_evaluation_errors_are_returned_not_raised() -> None:
    decl = sa.declaration("ticket", "keyword", "execution.input.ticket.id")
    out = sa.evaluate(decl, sa.activation(recorded("batch_loop")), "x-1")
    assert out.value is None and out.error and "ticket" in out.error
    decl = sa.declaration("odd", "int", 'execution.tenant == "default" ? 1 : "a"')
    act = sa.activation(recorded("batch_loop"))
    act["execution"]["tenant"] = "other"
    out = sa.evaluate(decl, act, "x-2")
    assert out.error and "x-2" in out.error and "declared int" in out.error


def test_results_are_typed() -> None:
    d = sa.declaration("c", "double", "1")
    assert sa.coerce(d, 1, "x") == 1.0 and isinstance(sa.coerce(d, 1, "x"), float)
    i = sa.declaration("n", "int", "1")
    with pytest.raises(sa.SearchAttributeError):
        sa.coerce(i, True, "x")  # a bool is not an int
    t = sa.declaration("t", "datetime", 'timestamp("2026-01-01T00:00:00Z")')
    assert sa.coerce(t, datetime(2026, 1, 1), "x").tzinfo is not None
    k = sa.declaration("k", "keyword", '"a"')
    with pytest.raises(sa.SearchAttributeError, match="1024"):
        sa.coerce(k, "a" * 2000, "x")


@pytest.mark.parametrize(("type_", "text", "value"), [
    ("int", "3", 3), ("double", "0.5", 0.5), ("bool", "true", True), ("bool", "0", False),
    ("keyword", "gold", "gold"),
    ("datetime", "2026-01-31T12:00:00Z", datetime(2026, 1, 31, 12, tzinfo=UTC)),
])
def test_filter_values_parse_as_the_type(type_: str, text: str, value: object) -> None:
    assert sa.parse_value(type_, "a", text) == value


@pytest.mark.parametrize(("type_", "text"), [("int", "1.5"), ("int", "x"),
                                             ("double", "nan"), ("bool", "yes"),
                                             ("datetime", "today"), ("int", str(2**64))])
def test_bad_filter_values_name_the_attribute(type_: str, text: str) -> None:
    with pytest.raises(sa.SearchAttributeError) as info:
        sa.parse_value(type_, "a", text)
    assert f"attr.a={text!r}" in str(info.value) and "pass e.g." in str(info.value)
