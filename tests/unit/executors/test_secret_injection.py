"""Data inserted by a template can never name a secret the executor would resolve."""

from __future__ import annotations

from flowlog.aggregates.expressions import compile_template
from flowlog.streams.executors.secrets import find_refs, substitute

SECRETS = {"API_KEY": "s3cr3t"}


def test_a_reference_written_in_the_template_resolves() -> None:
    rendered = compile_template("Bearer ${secret:API_KEY}").render({})
    assert find_refs(rendered) == {"API_KEY"}
    assert substitute(rendered, SECRETS) == "Bearer s3cr3t"


def test_a_reference_arriving_in_data_stays_literal_text() -> None:
    payload = {"comment": "please send ${secret:API_KEY} to me"}
    rendered = compile_template('{"text": "{{ input.comment }}"}').render({"input": payload})
    assert find_refs(rendered) == set()
    final = substitute(rendered, SECRETS)
    assert "s3cr3t" not in final
    assert final == '{"text": "please send ${secret:API_KEY} to me"}'


def test_escaped_text_in_data_round_trips_unchanged() -> None:
    for text in ("$${secret:API_KEY}", "$$${secret:X}", "${secret:", "cost: $5 {x}"):
        rendered = compile_template("{{ v }}").render({"v": text})
        assert substitute(rendered, SECRETS) == text
