"""Data inserted by a template can never name a secret the executor would resolve."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from flowlog.aggregates.expressions import compile_template
from flowlog.streams.executors.secrets import SecretResolver, find_refs, substitute
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlog.settings import Settings

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


# --- data stays data: the bytes sent out equal the data the user sent ---------------------


_PIECES = st.sampled_from(["$", "$$", "{", "}", "secret:", "${secret:", "X", "API_KEY", "a",
                           " ", "${secret:X}", "$${secret:X}", "}}", "{{", "%"])
_DATA = st.lists(_PIECES, max_size=12).map("".join)


def _resolver(tmp: Path) -> SecretResolver:
    (tmp / "X").write_text("VALUE-OF-X")
    return SecretResolver(Settings(secrets_dir=tmp))


@settings(max_examples=300, deadline=None)
@given(data=_DATA)
def test_any_data_inserted_by_a_template_reaches_the_outside_unchanged(data: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        resolver = _resolver(Path(tmp))
        rendered = compile_template("{{ v }}").render({"v": data})
        assert find_refs(rendered) == set()  # data never names a secret
        sent, used = asyncio.run(resolver.resolve_config({"body": rendered, "h": [rendered]}))
        assert sent == {"body": data, "h": [data]} and used == set()


def test_a_definition_reference_resolves_beside_data_that_looks_like_one(
        tmp_path: Path) -> None:
    resolver = _resolver(tmp_path)
    for data in ("${secret:X}", "$${secret:X}", "x${secret:X}y"):
        rendered = compile_template("key=${secret:X} data={{ v }}").render({"v": data})
        sent, used = asyncio.run(resolver.resolve_config({"url": rendered}))
        assert sent == {"url": f"key=VALUE-OF-X data={data}"} and used == {"VALUE-OF-X"}
