"""Dead letters on real RabbitMQ and Kafka (issue 13's "Done when"): the ladder, verified
resolution, manual retry, discard, bulk retry by filter, malformed messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aio_pika
from flowlog.streams.deadletters import ops, topology
from flowlog.streams.deadletters.message import H_REASON
from prometheus_client import REGISTRY

from tests.e2e.conftest import Engine, events_of
from tests.integration.deadletters.conftest import flaky_workflow, until


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [e["event_type"] for e in events]


async def test_exhausted_parked_retried_by_the_ladder_then_success_resolves_the_incident(
        engine: Engine, deadletters: Any, tmp_path: Path) -> None:
    await engine.apply(flaky_workflow(tmp_path, "dl-once", succeed_on=2))
    await deadletters()
    events = await engine.run("dl-once", {}, within=90)
    assert events[-1]["event_type"] == "ExecutionSucceeded", _types(events)
    dead = events_of(events, "NodeDeadLettered")
    raised = events_of(events, "IncidentRaised")
    resolved = events_of(events, "IncidentResolved")
    assert len(dead) == 1 and len(raised) == 1 and len(resolved) == 1
    assert resolved[0]["resolution"] == "retried"
    assert resolved[0]["incident_id"] == raised[0]["incident_id"]
    # verified: resolved after the retried node succeeded, not when the retry was asked
    order = _types(events)
    assert order.index("NodeSucceeded") < order.index("IncidentResolved")
    retried = events_of(events, "NodeScheduled", attempt=2)
    assert len(retried) == 1


async def test_a_retry_that_fails_again_goes_one_rung_down(
        engine: Engine, deadletters: Any, tmp_path: Path) -> None:
    await engine.apply(flaky_workflow(tmp_path, "dl-twice", succeed_on=3))
    dl = await deadletters()
    events = await engine.run("dl-twice", {}, within=120)
    assert events[-1]["event_type"] == "ExecutionSucceeded", _types(events)
    assert len(events_of(events, "NodeDeadLettered")) == 2
    assert len(events_of(events, "IncidentRaised")) == 1  # one incident, open throughout
    assert len(events_of(events, "IncidentResolved")) == 1
    assert [e["attempt"] for e in events_of(events, "NodeScheduled")] == [1, 2, 3]
    # the second dead letter went one rung down (the 2 s queue): the bridge's commands say
    # which rung's delay was over, one command per rung
    reasons = sorted(c["reason"] for c in await _commands(engine.settings)
                     if c["execution_id"] == events[0]["execution_id"])
    assert reasons == ["retry ladder: rung 1 of 2 is over", "retry ladder: rung 2 of 2 is over"]
    assert dl.task is not None and not dl.task.done()


async def test_queue_depths_and_the_oldest_age_reach_the_gauges(
        engine: Engine, deadletters: Any, tmp_path: Path) -> None:
    await engine.apply(flaky_workflow(tmp_path, "dl-gauge", succeed_on=2))
    dl = await deadletters(deadletter_ladders={"dl-gauge": []})
    x = await engine.trigger("dl-gauge", {})
    await engine.until(x, "IncidentRaised", within=60)

    def parked_gauges() -> tuple[float, float] | None:
        labels = {"queue": "parked"}
        depth = REGISTRY.get_sample_value("flowlog_deadletter_queue_depth", labels)
        age = REGISTRY.get_sample_value("flowlog_deadletter_oldest_age_seconds", labels)
        return (depth, age) if depth == 1 and age and age > 0 else None

    depth, age = await until(parked_gauges, 60, "the sampler saw the parked dead letter")
    assert depth == 1 and age > 0
    assert REGISTRY.get_sample_value("flowlog_deadletter_queue_depth", {"queue": "due"}) == 0
    assert dl.task is not None and not dl.task.done()


async def _commands(s: Any) -> list[dict[str, Any]]:
    from flowlog.schemas.codec import Codec
    from flowlog.streams.runtime.kafka import catalog, read_partition

    cat = catalog(s)
    codec = Codec.from_settings(s)
    out = []
    for p in range(cat.topics["commands"].partitions):
        async for msg in read_partition(s, cat.name("commands"), p):
            d = codec.decode(msg.value)
            if d.name == "RetryNodeRequested":
                out.append(d.record)
    return out


async def test_manual_retry_discard_and_bulk_retry_by_filter(
        engine: Engine, deadletters: Any, tmp_path: Path) -> None:
    # an empty ladder parks at once: every dead letter waits for an operator
    await engine.apply(flaky_workflow(tmp_path, "dl-manual", succeed_on=2))
    await engine.apply(flaky_workflow(tmp_path, "dl-other", succeed_on=2))
    s = engine.settings.model_copy(update={"deadletter_ladders": {"dl-manual": [],
                                                                  "dl-other": []}})
    await deadletters(deadletter_ladders=s.deadletter_ladders)
    manual = [await engine.trigger("dl-manual", {}) for _ in range(4)]
    other = await engine.trigger("dl-other", {})
    for x in [*manual, other]:
        await engine.until(x, "IncidentRaised", within=60)

    async def parked(flt: ops.Filter) -> list[ops.Held]:
        return await ops.list_letters(s, flt)

    held = await until(lambda: _n(parked(ops.Filter(workflow="dl-manual")), 4), 60,
                       "4 parked dead letters of dl-manual")
    by_exec = {h.letter.execution_id: h for h in held if h.letter}
    assert set(by_exec) == set(manual)
    first = by_exec[manual[0]]
    assert first.letter is not None and first.letter.node_type == "tool"
    assert first.letter.input == {"succeed_on": 2} and first.letter.config["tool"] == "flaky"

    # manual retry of one message
    out = await ops.act(s, ops.Filter(message_ids=frozenset({first.message_id})),
                        action="retry", by="alice", reason="partner fixed")
    assert out.done == 1
    events = await engine.wait(manual[0], within=60)
    assert events[-1]["event_type"] == "ExecutionSucceeded"
    assert len(events_of(events, "IncidentResolved", resolution="retried")) == 1

    # discard one: its execution is cancelled by a command that names who and why
    second = by_exec[manual[1]]
    out = await ops.act(s, ops.Filter(message_ids=frozenset({second.message_id})),
                        action="discard", by="bob", reason="duplicate order", then="cancel")
    assert out.done == 1
    events = await engine.wait(manual[1], within=60)
    assert events[-1]["event_type"] == "ExecutionCancelled"
    assert "bob" in str(events[-1]) or "duplicate order" in events[-1]["reason"]

    # bulk retry by filter: a dry run takes nothing, then the two left of dl-manual go,
    # and dl-other's stays parked
    preview = await ops.act(s, ops.Filter(workflow="dl-manual"), action="retry", by="carol",
                            reason="bulk", dry_run=True)
    assert len(preview.matched) == 2 and preview.done == 0
    seen: list[tuple[int, int]] = []
    out = await ops.act(s, ops.Filter(workflow="dl-manual"), action="retry", by="carol",
                        reason="bulk", progress=lambda d, t: seen.append((d, t)))
    assert out.done == 2 and seen[-1] == (2, 2)
    for x in manual[2:]:
        events = await engine.wait(x, within=60)
        assert events[-1]["event_type"] == "ExecutionSucceeded"
    left = await parked(ops.Filter())
    assert [h.letter.execution_id for h in left if h.letter] == [other]


async def _n(coro: Any, n: int) -> Any:
    items = await coro
    return items if len(items) == n else None


async def test_a_malformed_message_is_parked_with_a_reason_and_not_retried(
        engine: Engine, deadletters: Any) -> None:
    dl = await deadletters()
    s = dl.settings
    conn = await topology.connect(s)
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        topo = await topology.declare(ch, s)
        for i, body in enumerate([b"not json", b'{"v": 1, "execution_id": ""}', b"[1]"]):
            await topo.exchange.publish(aio_pika.Message(body, message_id=f"bad-{i}"),
                                        routing_key="due.handmade.tool")
    held = await until(lambda: _n(ops.list_letters(s, ops.Filter()), 3), 60,
                       "3 malformed messages parked")
    assert all(h.letter is None and h.problem and "malformed" in h.problem for h in held)
    assert all(h.message.headers and h.message.headers.get(H_REASON) for h in held)
    assert "not JSON" in next(h.problem for h in held if h.message_id == "bad-0")
    assert "execution_id" in next(h.problem for h in held if h.message_id == "bad-1")
    # an operator cannot retry them (nothing to retry), only discard
    out = await ops.act(s, ops.Filter(), action="retry", by="x", reason="try")
    assert out.done == 0 and len(out.skipped) == 3
    out = await ops.act(s, ops.Filter(), action="discard", by="x", reason="junk")
    assert out.done == 3
    assert await ops.list_letters(s, ops.Filter()) == []
