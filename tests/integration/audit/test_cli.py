"""`flowlog audit`, `replay what-if|verify` and `lineage` on a filled audit store; bad input
exits 2, names what was given and what exists, and writes nothing."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from confluent_kafka import Producer
from flowlog.aggregates.records import envelope
from flowlog.projections.audit.projector import run, tracking_name
from flowlog.projections.audit.store import AuditStore
from flowlog.schemas.codec import Codec
from flowlog.schemas.events import WorkflowDefined
from flowlog.schemas.sdk import EventProducer
from typer.testing import CliRunner

from flowlog.cli import app
from flowlog.settings import Settings, get_settings
from tests.support.audit import HISTORIES, end_offsets, produce

WORKFLOWS = ("support-triage", "delay-and-wait", "webhook-retry-deadletter")


@pytest.fixture
def filled(settings: Settings, pg_schema: str, new_topic: Callable[..., str]
           ) -> dict[str, Any]:
    """Histories of three examples in execution-events, their definitions published, and
    the audit store filled by the projector (in this process)."""
    topic = new_topic("execution-events", partitions=1)
    new_topic("quarantine", partitions=1)
    new_topic("workflow-definitions", partitions=1)
    commands = new_topic("commands", partitions=1)
    chosen = [h for h in HISTORIES if h.name.startswith("scenario:")
              and h.definition.workflow_id in WORKFLOWS]
    executions = [h.events for h in chosen]  # their own ids: retry jitter hashes the id
    produce(settings, topic, 1, executions)
    with EventProducer.from_settings(settings) as producer:
        for h in chosen:
            raw = {k: v for k, v in h.definition.spec.raw.items() if k != "version"}
            producer.publish_sync(WorkflowDefined(
                workflow_id=h.definition.workflow_id, workflow_version=1, version=1,
                definition=raw))
    # the operator's retry of hook-1, as the command gateway publishes it (who and why in
    # headers; the event id is the causation id the recorded history carries)
    codec = Codec.from_settings(settings)
    record = {**envelope("RetryNodeRequested", event_id="dlq-retry-1", execution_id="hook-1",
                         workflow_id="webhook-retry-deadletter", workflow_version=1,
                         occurred_at=datetime(2025, 1, 6, 10, tzinfo=UTC), correlation_id=None,
                         causation_id=None, tenant="default"),
              "node_id": "notify", "reason": "partner fixed their endpoint"}
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    producer.produce(commands, key=b"hook-1", value=codec.encode("RetryNodeRequested", record),
                     headers=[("flowlog-actor", b"user:alice"),
                              ("flowlog-reason", b"partner fixed their endpoint")])
    assert producer.flush(30) == 0
    ends = end_offsets(settings, topic, 1)
    mine = settings.model_copy(update={"pg_schema": pg_schema})
    store = AuditStore(mine)

    async def fill() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run(mine, stop))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while store.position(tracking_name(topic, 0)) != ends[0] - 1 or \
                store.position(tracking_name(commands, 0)) != 0:
            assert loop.time() < deadline, "the projector did not store every offset"
            assert not task.done(), task
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(fill())
    store.close()
    env = {"FLOWLOG_TOPIC_PREFIX": settings.topic_prefix, "FLOWLOG_PG_SCHEMA": pg_schema}
    return {"env": env, "executions": {e[0].execution_id: e for e in executions},
            "settings": settings, "schema": pg_schema, "chosen": chosen}


def _cli(filled: dict[str, Any], *args: str, env: dict[str, str] | None = None) -> Any:
    clear = getattr(get_settings, "cache_clear", None)
    if clear is not None:  # the process-wide settings are read once; each test has its own
        clear()
    try:
        return CliRunner().invoke(app, list(args), env=env or filled["env"])
    finally:
        if clear is not None:
            clear()


def _json(filled: dict[str, Any], *args: str) -> Any:
    result = _cli(filled, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _triage(filled: dict[str, Any]) -> str:
    return "triage-1"


def test_history_state_and_diff(filled: dict[str, Any]) -> None:
    eid = _triage(filled)
    events = filled["executions"][eid]
    h = _json(filled, "audit", eid)
    assert len(h["events"]) == len(events) and h["status"] == "succeeded"
    assert [m["model"] for m in h["model_calls"]] == ["claude-3-5-haiku"]
    state = _json(filled, "audit", eid, "--at", "6")
    assert state["seq"] == 6 and state["nodes"]["classify"]["status"] == "succeeded"
    at_time = _json(filled, "audit", eid, "--at", events[5].occurred_at.isoformat())
    assert at_time["seq"] >= 6
    d = _json(filled, "audit", eid, "--diff", "5", "6")
    assert {c["path"] for c in d["changes"]} == {
        "seq", "nodes.classify.status", "nodes.classify.output",
        "pending_timers.node_timeout:classify:1"}
    retried = _json(filled, "audit", "hook-1")
    assert [(c["command"], c["command_id"], c["who"], c["why"])
            for c in retried["operator_commands"]] == \
        [("RetryNodeRequested", "dlq-retry-1", "user:alice", "partner fixed their endpoint")]
    plain = _cli(filled, "audit", eid, "--at", "6")
    assert plain.exit_code == 0 and "classify" in plain.stdout


def test_what_if_verify_and_lineage(filled: dict[str, Any], tmp_path: Path) -> None:
    eid = _triage(filled)
    triage = next(h for h in filled["chosen"] if h.definition.workflow_id == "support-triage")
    raw = copy.deepcopy(triage.definition.spec.raw)
    raw["nodes"]["route"]["cases"] = {"billing": ["file_issue"], "bug": ["refund_check"]}
    changed = tmp_path / "support-triage-v2.yaml"
    changed.write_text(yaml.safe_dump(raw))

    same = _json(filled, "replay", "what-if", eid, "--version", "1")
    assert same["changed"] is False
    report = _json(filled, "replay", "what-if", eid, "--definition", str(changed))
    assert report["outcome_changed"] and \
        [n["node_id"] for n in report["needs_call"]] == ["file_issue"]
    batch = _json(filled, "replay", "what-if", "--workflow", "support-triage",
                  "--definition", str(changed), "--since", "2020-01-01T00:00:00Z")
    assert batch["total"] == 1 and batch["outcome_changed"] == 1

    verified = _json(filled, "replay", "verify")
    assert verified["checked"] == len(filled["executions"]) and verified["differ"] == 0

    # the tables and trees a person reads
    for args in (("audit", eid), ("audit", eid, "--diff", "5", "9"),
                 ("replay", "what-if", eid, "--definition", str(changed)),
                 ("replay", "what-if", "--workflow", "support-triage", "--version", "1"),
                 ("replay", "verify"), ("lineage", eid),
                 ("lineage", filled["executions"][eid][3].event_id)):
        plain = _cli(filled, *args)
        assert plain.exit_code == 0, (args, plain.output)
        assert plain.stdout.strip()

    first = filled["executions"][eid][0]
    lin = _json(filled, "lineage", eid)
    assert lin["execution_id"] == eid and lin["caused"]["kind"] == "execution"
    by_event = _json(filled, "lineage", filled["executions"][eid][-1].event_id)
    assert by_event["caused_by"]["label"].startswith("TriggerReceived")
    assert by_event["correlation_id"] == first.correlation_id


def _snapshot(filled: dict[str, Any]) -> tuple[Any, ...]:
    """What a command could have written: the schema's tables and row counts, and the end
    offsets of this test's topics."""
    schema = filled["schema"]
    settings: Settings = filled["settings"]
    with psycopg.connect(settings.pg_dsn) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s "
                              "ORDER BY 1", (schema,)).fetchall()
        counts = [conn.execute(f'SELECT count(*) FROM "{schema}"."{t}"').fetchone()
                  for (t,) in tables]
    topics = {name: end_offsets(settings, settings.topic_prefix + name, 1)
              for name in ("execution-events", "quarantine", "workflow-definitions")}
    return tables, counts, topics


def test_bad_input_exits_2_names_what_was_given_and_what_exists_and_writes_nothing(
        filled: dict[str, Any], tmp_path: Path) -> None:
    eid = _triage(filled)
    last = len(filled["executions"][eid])
    before = _snapshot(filled)

    r = _cli(filled, "audit", "no-such-execution")
    assert r.exit_code == 2
    assert "'no-such-execution' is not in the audit store" in r.stderr
    assert any(e in r.stderr for e in filled["executions"])  # names some that exist

    r = _cli(filled, "audit", eid, "--at", str(last + 5))
    assert r.exit_code == 2
    assert f"seq {last + 5} is past the end" in r.stderr and f"it has {last} events" in r.stderr

    r = _cli(filled, "audit", eid, "--diff", "1", "nonsense")
    assert r.exit_code == 2 and "'nonsense' is neither a seq" in r.stderr

    bad = tmp_path / "broken.yaml"
    bad.write_text("id: support-triage\nnodes:\n  a: {type: tool, needs: [ghost]}\n")
    r = _cli(filled, "replay", "what-if", eid, "--definition", str(bad))
    assert r.exit_code == 2
    assert "broken.yaml" in r.stderr and "does not validate" in r.stderr
    assert "ghost" in r.stderr

    r = _cli(filled, "replay", "what-if", eid, "--version", "9")
    assert r.exit_code == 2 and "no published version 9" in r.stderr and "[1]" in r.stderr

    r = _cli(filled, "replay", "verify", "--workflow", "nope")
    assert r.exit_code == 2 and "'nope' has no executions" in r.stderr
    assert "support-triage" in r.stderr

    r = _cli(filled, "lineage", "not-an-id")
    assert r.exit_code == 2 and "'not-an-id' is neither" in r.stderr

    assert _snapshot(filled) == before


def test_a_missing_store_is_reported_and_not_created(
        filled: dict[str, Any], pg_dsn: str) -> None:
    empty = filled["schema"] + "_none"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{empty}"')
    try:
        r = _cli(filled, "audit", "x", env={**filled["env"], "FLOWLOG_PG_SCHEMA": empty})
        assert r.exit_code == 2 and f"no audit store in schema '{empty}'" in r.stderr
        with psycopg.connect(pg_dsn) as conn:
            assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s",
                                (empty,)).fetchone() == (0,)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{empty}" CASCADE')

