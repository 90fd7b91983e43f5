"""Data stays data: trigger data that looks like a secret reference reaches the outside call
exactly as sent, through a webhook node's URL, header and body and the http_request tool,
and the secret's value appears nowhere outside (issue 8, item 8)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from tests.e2e.conftest import Engine
from tests.support.fake_webhook import FakeWebhookServer

pytestmark = pytest.mark.e2e

SECRET_VALUE = "TOPSECRET-VALUE-7f3a"
DATA = ["${secret:X}", "$${secret:X}", "x${secret:X}y"]


async def test_secret_lookalike_data_reaches_the_target_unchanged(
        make_engine: object, fake_webhook: FakeWebhookServer, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets-x"
    secrets.mkdir()
    (secrets / "X").write_text(SECRET_VALUE)
    engine: Engine = await make_engine(secrets_dir=secrets)  # type: ignore[operator]
    target = fake_webhook.url
    definition = tmp_path / "lookalike.yaml"
    definition.write_text(f"""
id: lookalike
secrets: [X]
inputs:
  d: {{type: string, required: true}}
nodes:
  hook:
    type: webhook
    method: POST
    url: "{target}/hook?d={{{{ input.d }}}}"
    headers: {{X-Data: "{{{{ input.d }}}}"}}
    body: '{{"d": {{{{ input.d | tojson }}}}}}'
    input: {{d: inputs.d}}
  tool:
    type: tool
    tool: http_request
    needs: [hook]
    input:
      method: '"POST"'
      url: '"{target}/tool?d=" + inputs.d'
      headers: '{{"X-Data": inputs.d}}'
      json: '{{"d": inputs.d}}'
""")
    await engine.apply(definition)
    for data in DATA:
        fake_webhook.reset()
        events = await engine.run("lookalike", {"d": data})
        assert events[-1]["event_type"] == "ExecutionSucceeded", events[-1]
        hook, tool = fake_webhook.requests
        for received in (hook, tool):
            assert parse_qs(received.query)["d"] == [data], received.query
            assert received.headers["x-data"] == data
            assert json.loads(received.body) == {"d": data}
            assert SECRET_VALUE not in received.text + received.query + str(received.headers)
        assert SECRET_VALUE not in json.dumps(events, default=str)
