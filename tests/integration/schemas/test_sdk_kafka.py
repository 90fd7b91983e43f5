"""The producer SDK and `flowlog publish` against the real broker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from flowlog.schemas.claimcheck import LocalBlobStore
from flowlog.schemas.codec import Codec
from flowlog.schemas.events import ExecutionEventBatch, NodeStarted, TriggerReceived, to_model
from flowlog.schemas.ids import execution_event_id, execution_id_for
from flowlog.schemas.sdk import EVENT_TYPE_HEADER, EventProducer
from flowlog.schemas.topics import TopicCatalog
from typer.testing import CliRunner

from flowlog.cli import app
from flowlog.settings import Settings
from tests.support.kafka_topics import consume

pytestmark = pytest.mark.integration


def trigger(i: int, dedup: str | None = None) -> TriggerReceived:
    return TriggerReceived(workflow_id="invoice-triage", workflow_version=3, source="webhook",
                           input={"invoice": i}, dedup_key=dedup)


def test_publish_sync_and_async_reach_their_topic_keyed_by_execution(
    kafka_bootstrap: str, catalog: TopicCatalog
) -> None:
    with EventProducer(kafka_bootstrap, catalog=catalog) as producer:
        first = producer.publish_sync(trigger(1, "invoice-1"),
                                      headers={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16
                                               + "-01"})
        again = producer.publish_sync(trigger(2, "invoice-1"))

        async def many() -> list[object]:
            return await asyncio.gather(*(producer.publish_async(trigger(i)) for i in range(20)))

        reports = asyncio.run(many())
    assert first.topic == catalog.name("triggers")
    assert first.key == execution_id_for("invoice-triage", "invoice-1") == again.key
    assert first.partition == again.partition  # same execution, same partition
    assert len(reports) == 20
    msgs = consume(kafka_bootstrap, catalog.name("triggers"), 22)
    assert len(msgs) == 22
    codec = Codec()
    decoded = [to_model(*(lambda d: (d.name, d.record))(codec.decode(m.value()))) for m in msgs]
    assert sorted(e.input["invoice"] for e in decoded) == sorted([1, 2, *range(20)])  # type: ignore[union-attr]
    by_offset = {(m.partition(), m.offset()): m for m in msgs}
    headers = dict(by_offset[(first.partition, first.offset)].headers())
    assert headers[EVENT_TYPE_HEADER] == b"TriggerReceived"
    assert headers["traceparent"].startswith(b"00-")


def test_batches_go_to_execution_events_as_one_record(
    kafka_bootstrap: str, catalog: TopicCatalog
) -> None:
    events = [NodeStarted(event_id=execution_event_id("ex-9", s), execution_id="ex-9",
                          workflow_id="w", workflow_version=1, seq=s, node_id=f"n{s}",
                          attempt=1) for s in (5, 6, 7)]
    batch = ExecutionEventBatch(execution_id="ex-9", first_seq=5, last_seq=7, events=events,
                                causation_id=execution_event_id("ex-9", 4))
    with EventProducer(kafka_bootstrap, catalog=catalog) as producer:
        report = producer.publish_sync(batch)
    assert report.topic == catalog.name("execution-events") and report.key == "ex-9"
    (msg,) = consume(kafka_bootstrap, catalog.name("execution-events"), 1)
    decoded = Codec().decode(msg.value())
    assert to_model(decoded.name, decoded.record) == batch


def test_large_payloads_go_out_of_line(
    kafka_bootstrap: str, catalog: TopicCatalog, tmp_path: Path
) -> None:
    codec = Codec(claim_store=LocalBlobStore(tmp_path), claim_threshold=4096)
    big = TriggerReceived(workflow_id="w", workflow_version=1, source="manual",
                          input={"document": "x" * 2_000_000})
    with EventProducer(kafka_bootstrap, catalog=catalog, codec=codec) as producer:
        producer.publish_sync(big)
    (msg,) = consume(kafka_bootstrap, catalog.name("triggers"), 1)
    assert len(msg.value()) < 4096
    decoded = codec.decode(msg.value())
    assert decoded.claim_uri and to_model(decoded.name, decoded.record) == big


def test_cli_publish_one_event_and_a_jsonl_file(
    kafka_bootstrap: str, settings: Settings, catalog: TopicCatalog, tmp_path: Path
) -> None:
    runner = CliRunner()
    env = {"FLOWLOG_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "FLOWLOG_TOPIC_PREFIX": settings.topic_prefix,
           "FLOWLOG_STATE_DIR": str(tmp_path / "state")}
    one = {"event_type": "TriggerReceived", "workflow_id": "wf", "workflow_version": 1,
           "source": "manual", "input": {"n": 0}, "dedup_key": "cli-0"}
    result = runner.invoke(app, ["publish", json.dumps(one)], env=env)
    assert result.exit_code == 0, result.output
    assert f"key={execution_id_for('wf', 'cli-0')}" in result.output

    missing = {k: v for k, v in one.items() if k != "workflow_id"}
    result = runner.invoke(app, ["publish", json.dumps(missing)], env=env)
    assert result.exit_code == 1
    assert "workflow_id" in result.output and "Fix" in result.output

    lines = [json.dumps({**one, "dedup_key": f"cli-{i}", "input": {"n": i}})
             for i in range(1, 41)]
    lines.insert(10, json.dumps(missing))
    lines.insert(20, "{not json")
    lines.append(json.dumps({"event_type": "CancelRequested", "execution_id": "e", "workflow_id":
                             "wf", "workflow_version": 1, "reason": "operator"}))
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["publish", "--jsonl", str(path)], env=env)
    assert result.exit_code == 1  # some lines were refused
    out = " ".join(result.output.split())
    assert "TriggerReceived │ 40" in out and "CancelRequested │ 1" in out
    assert "total sent │ 41" in out and "refused │ 2" in out
    assert "line 11:" in out and "workflow_id" in out and "line 21:" in out
    assert len(consume(kafka_bootstrap, catalog.name("triggers"), 41)) == 41
    assert len(consume(kafka_bootstrap, catalog.name("commands"), 1)) == 1
