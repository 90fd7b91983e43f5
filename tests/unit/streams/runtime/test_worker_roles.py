"""Role names of `flowlog worker`: `all`, the opt-in processor, the dispatcher's former name."""

from __future__ import annotations

import logging

import pytest
from flowlog.streams.runtime.worker import ALIASES, ROLES, expand

pytestmark = pytest.mark.unit


def test_all_is_the_three_default_roles_and_the_dispatcher_is_named_for_what_it_does() -> None:
    assert expand(["all"]) == ["orchestrator", "executor", "dispatcher"]
    assert "timers" not in ROLES


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
