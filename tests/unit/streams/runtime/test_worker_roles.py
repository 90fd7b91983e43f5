"""Role names of `flowlog worker`: `all` (processor + executor), the opt-in classic layout,
the dispatcher's former name."""

from __future__ import annotations

import logging

import pytest
from flowlog.streams.runtime.worker import ALIASES, ROLES, expand

pytestmark = pytest.mark.unit


def test_all_is_the_processor_and_the_executor() -> None:
    assert expand(["all"]) == ["processor", "executor"]
    assert "timers" not in ROLES


def test_the_classic_layout_is_named_explicitly() -> None:
    assert expand(["orchestrator", "executor", "dispatcher"]) == [
        "orchestrator", "executor", "dispatcher"]


@pytest.mark.parametrize("roles", [["all", "orchestrator"], ["processor", "dispatcher"],
                                   ["processor", "timers"], ["orchestrator", "all"]])
def test_the_processor_never_runs_beside_the_roles_it_replaces(roles: list[str]) -> None:
    with pytest.raises(ValueError, match=r"processor does the work of .*never both"):
        expand(roles)


def test_timers_is_accepted_for_one_release_as_the_dispatcher_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert expand(["timers"]) == ["dispatcher"]
    assert ALIASES == {"timers": "dispatcher"}
    assert "flowlog worker dispatcher" in caplog.text


def test_an_alias_beside_its_new_name_runs_the_role_once() -> None:
    assert expand(["dispatcher", "timers", "executor"]) == ["dispatcher", "executor"]


def test_an_unknown_role_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown role 'timer'.*dispatcher"):
        expand(["timer"])
    assert expand(["processor", "executor"]) == ["processor", "executor"]
