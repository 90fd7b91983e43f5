"""Secret references: finding, substituting, redacting; environment names."""

from __future__ import annotations

from flowlog.streams.executors.secrets import (
    REDACTED,
    Redactor,
    env_name,
    find_refs,
    substitute,
)


def test_find_refs_anywhere_in_a_config() -> None:
    config = {
        "url": "https://x/${secret:A}",
        "headers": {"Authorization": "Bearer ${secret:B}", "X": "plain"},
        "list": ["${secret:C}", 3, None, {"deep": "${secret: A }"}],
    }
    assert find_refs(config) == {"A", "B", "C"}
    assert find_refs({"a": "no refs", "b": 1}) == set()


def test_substitute_replaces_every_reference_and_copies() -> None:
    config = {"h": "Bearer ${secret:B}-${secret:A}", "l": ["${secret:A}"], "n": 1}
    out = substitute(config, {"A": "aa", "B": "bb"})
    assert out == {"h": "Bearer bb-aa", "l": ["aa"], "n": 1}
    assert config["h"] == "Bearer ${secret:B}-${secret:A}"


def test_redactor_scrubs_values_longest_first() -> None:
    r = Redactor({"abc", "abcdef"})
    assert r.text("key abcdef and abc") == f"key {REDACTED} and {REDACTED}"
    assert r.json({"h": ["x abc"], "abc": 1}) == {"h": [f"x {REDACTED}"], REDACTED: 1}
    assert not Redactor() and Redactor().json({"a": "abc"}) == {"a": "abc"}


def test_env_names() -> None:
    assert env_name("helpdesk-token") == "FLOWLOG_SECRET_HELPDESK_TOKEN"
    assert env_name("a.b/c") == "FLOWLOG_SECRET_A_B_C"
