"""`FinishedWindow`: the finished executions a partition keeps, and the one setting that
sizes it for both roles (with the two former names still read)."""

from __future__ import annotations

import pytest
from flowlog.streams.runtime.window import FinishedWindow

from flowlog.settings import Settings

pytestmark = pytest.mark.unit


def test_add_keeps_the_last_size_ids_oldest_first_and_returns_the_evicted() -> None:
    w = FinishedWindow(3)
    assert [w.add(e) for e in ("a", "b", "c")] == [[], [], []]
    assert w.add("d") == ["a"]
    assert list(w) == ["b", "c", "d"] and len(w) == 3
    assert "a" not in w and "d" in w


def test_an_id_added_again_becomes_the_newest_and_evicts_nothing() -> None:
    w = FinishedWindow(2)
    w.add("a")
    w.add("b")
    assert w.add("a") == []
    assert list(w) == ["b", "a"]
    assert w.add("c") == ["b"]  # "a" was refreshed, so "b" is now the oldest


@pytest.mark.parametrize("size", [0, -5, 1])
def test_the_window_holds_at_least_the_execution_that_just_finished(size: int) -> None:
    w = FinishedWindow(size)
    assert w.size == 1
    assert w.add("a") == []
    assert w.add("b") == ["a"]
    assert list(w) == ["b"]


def test_the_bound_holds_over_a_long_history() -> None:
    w = FinishedWindow(100)
    evicted = [old for n in range(10_000) for old in w.add(f"e{n}")]
    assert len(w) == 100 and list(w) == [f"e{n}" for n in range(9_900, 10_000)]
    assert evicted == [f"e{n}" for n in range(9_900)]  # in finishing order, each once


def test_one_setting_sizes_both_roles_and_the_former_names_are_aliases(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLOWLOG_FINISHED_WINDOW", "FLOWLOG_ORCHESTRATOR_FINISHED_WINDOW",
                 "FLOWLOG_PROCESSOR_FINISHED_WINDOW"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().finished_window == 5_000
    assert Settings(finished_window=7).finished_window == 7
    monkeypatch.setenv("FLOWLOG_PROCESSOR_FINISHED_WINDOW", "11")
    assert Settings().finished_window == 11
    monkeypatch.setenv("FLOWLOG_ORCHESTRATOR_FINISHED_WINDOW", "12")
    assert Settings().finished_window == 12  # of the two former names, this one wins
    monkeypatch.setenv("FLOWLOG_FINISHED_WINDOW", "13")
    assert Settings().finished_window == 13  # the new name wins over both


def test_a_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWLOG_FINISHED_WINDOW", "many")
    with pytest.raises(ValueError, match="FLOWLOG_FINISHED_WINDOW"):
        Settings()
