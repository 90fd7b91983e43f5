"""`flowlog trigger WORKFLOW --jsonl FILE`: every valid line a trigger, bad lines named."""

from __future__ import annotations

from pathlib import Path

import pytest
from flowlog.schemas.ids import execution_id_for
from flowlog.streams.runtime.kafka import ensure_topics
from typer.testing import CliRunner

from flowlog.settings import Settings
from tests.integration.ingress.hooks import read_topic


async def test_trigger_jsonl(settings: Settings, kafka_bootstrap: str, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    from flowlog.cli import app
    from flowlog.settings import get_settings

    ensure_topics(settings)
    monkeypatch.setenv("FLOWLOG_TOPIC_PREFIX", settings.topic_prefix)
    get_settings.cache_clear()
    file = tmp_path / "inputs.jsonl"
    file.write_text('{"n": 1}\n{"input": {"n": 2}, "dedup_key": "two"}\n\n[1, 2]\n{"n": 3}\n')
    try:
        result = CliRunner().invoke(app, ["trigger", "wf-bulk", "--jsonl", str(file)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert "3 trigger(s) sent" in result.output
    assert "line 4: a line must be a JSON object" in result.output
    triggers = await read_topic(settings)
    assert sorted(t["input"] for t in triggers) == ['{"n":1}', '{"n":2}', '{"n":3}']
    assert execution_id_for("wf-bulk", "two") in {t["execution_id"] for t in triggers}
