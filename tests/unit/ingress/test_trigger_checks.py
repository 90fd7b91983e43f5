"""Webhook and schedule trigger configs: every issue with its path."""

from __future__ import annotations

from typing import Any

from flowlog.aggregates.definition.validate import validate_definition


def definition(*triggers: dict[str, Any]) -> dict[str, Any]:
    return {"id": "wf", "secrets": ["HOOK"], "triggers": list(triggers),
            "nodes": {"a": {"type": "transform", "output": "1"}}}


def paths(raw: dict[str, Any]) -> dict[str, str]:
    _spec, issues = validate_definition(raw)
    return {i.path: i.message for i in issues}


def test_a_full_webhook_trigger_is_valid() -> None:
    spec, issues = validate_definition(definition({
        "type": "webhook", "path": "github/push", "method": "POST",
        "secret": "${secret:HOOK}", "tolerance": "2m", "headers": {"X-GitHub-Event": "push"},
        "allow_ips": ["127.0.0.1", "10.0.0.0/8"], "max_body": 65536,
        "rate_limit": {"per_ip": 10, "per_key": 100},
        "input": '{"repo": body.repository.name, "event": headers["x-github-event"]}',
        "dedup": 'headers["x-github-delivery"]'}))
    assert issues == [] and spec is not None


def test_bad_webhook_fields_are_each_reported() -> None:
    found = paths(definition({
        "type": "webhook", "path": "../etc", "method": "GET", "secret": "plain-text-key",
        "headers": {"bad header": "x"}, "allow_ips": ["300.1.1.1"], "max_body": 0,
        "rate_limit": {"per_ip": -1, "burst": 3}, "input": "nodes.a.output + ",
        "dedup": "unknown_var.x"}))
    assert found["triggers[0].path"] == "bad webhook path"
    assert found["triggers[0].method"] == "not an allowed value"
    assert "secret reference" in found["triggers[0].secret"]
    assert found["triggers[0].headers.bad header"] == "bad header name"
    assert found["triggers[0].allow_ips[0]"] == "not an IP address or CIDR"
    assert found["triggers[0].max_body"] == "must be at least 1"
    assert "between" in found["triggers[0].rate_limit.per_ip"]
    assert found["triggers[0].rate_limit.burst"] == "unknown field"
    assert found["triggers[0].input"].startswith("bad expression")
    assert "unknown variable `unknown_var`" in found["triggers[0].dedup"]


def test_undeclared_webhook_secret_is_reported() -> None:
    raw = definition({"type": "webhook", "secret": "${secret:OTHER}"})
    assert "missing secret reference `OTHER`" in paths(raw)["triggers[0].secret"]


def test_schedule_options() -> None:
    ok = definition({"type": "schedule", "cron": "0 7 * * 1-5", "timezone": "Europe/Paris",
                     "window": {"from": "06:00", "to": "20:00"}, "start": "2026-01-01",
                     "end": "2026-12-31T00:00:00+01:00", "missed": "run_all",
                     "max_catchup": 5})
    assert paths(ok) == {}
    found = paths(definition({"type": "schedule", "cron": "0 7 * * *",
                              "window": {"from": "25:00", "until": "x"}, "start": "soon",
                              "missed": "sometimes", "max_catchup": 0}))
    assert found["triggers[0].window.from"] == "bad time of day"
    assert found["triggers[0].window.until"] == "unknown field"
    assert found["triggers[0].start"] == "bad date or time"
    assert found["triggers[0].missed"] == "not an allowed value"
    assert found["triggers[0].max_catchup"] == "must be at least 1"
    found = paths(definition({"type": "schedule", "cron": "0 7 * * *", "start": "2026-02-01",
                              "end": "2026-01-01"}))
    assert found["triggers[0].end"] == "must be after start"


def test_event_and_poll_options() -> None:
    ok = definition(
        {"type": "event", "event": "order.paid", "filter": "event.amount > 0",
         "input": '{"id": event.id, "k": key}', "dedup": "event.id", "start": "earliest"},
        {"type": "event", "event": "x", "topic": "outside.orders", "format": "avro",
         "start": "2026-01-01T00:00:00Z"},
        {"type": "poll", "url": "https://api.example.com/items", "interval": "1m",
         "items": "response.data", "cursor": "item.updated_at", "input": "item",
         "rate_limit": 2, "headers": {"Authorization": "Bearer ${secret:HOOK}"}})
    assert paths(ok) == {}
    found = paths(definition(
        {"type": "event", "event": "bad topic!", "format": "xml", "filter": "nope.x",
         "start": "yesterday"},
        {"type": "poll", "url": "ftp://x", "interval": "10ms", "cursor": "row.id"}))
    assert found["triggers[0].event"] == "not a Kafka topic name"
    assert found["triggers[0].format"] == "not an allowed value"
    assert "unknown variable `nope`" in found["triggers[0].filter"]
    assert found["triggers[0].start"] == "bad start position"
    assert found["triggers[1].url"] == "not an http(s) URL"
    assert found["triggers[1].interval"] == "must be at least 100ms"
    assert "unknown variable `row`" in found["triggers[1].cursor"]
