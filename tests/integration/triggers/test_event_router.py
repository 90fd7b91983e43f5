"""Event triggers: 100,000 records on an outside topic, 1 % match → exactly those
executions, with a crash between publishing and committing half-way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import Producer
from flowlog.schemas.ids import execution_id_for
from flowlog.streams.triggers.events import EventRouter, EventTrigger

from flowlog.settings import Settings
from tests.integration.ingress.hooks import read_topic

N = 100_000


def produce(bootstrap: str, topic: str) -> tuple[set[tuple[int, int]], int]:
    """N JSON records (1 % kind=vip) and a few undecodable ones; returns the (partition,
    offset) of every vip record and the number of bad ones."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "queue.buffering.max.messages": 200_000})
    vip: set[tuple[int, int]] = set()

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        if msg.value().startswith(b'{"kind":"vip"'):
            vip.add((msg.partition(), msg.offset()))

    bad = 0
    for i in range(N):
        kind = "vip" if i % 100 == 7 else "std"
        producer.produce(topic, orjson.dumps({"kind": kind, "id": i, "amount": i % 250}),
                         key=str(i).encode(), on_delivery=delivered)
        if i % 20_000 == 0:
            producer.produce(topic, b"{not json", key=b"bad", on_delivery=delivered)
            bad += 1
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    return vip, bad


async def drain(router: EventRouter, until: Callable[[], bool] | None = None) -> None:
    """Poll until ``until()`` or, without one, until the router is at the end."""
    while True:
        if until is not None and until():
            return
        if until is None and await router.lag() == 0:
            return
        await router.poll_once(200)


async def test_one_percent_match_exactly_those_executions_across_a_crash(
        sched_settings: Settings, new_topic: Callable[..., str], kafka_bootstrap: str) -> None:
    topic = new_topic("orders", partitions=3)
    vip, bad = produce(kafka_bootstrap, topic)
    assert len(vip) == N // 100
    trigger = EventTrigger.from_config("wf-events", 1, 0, "default", {
        "event": "order.created", "topic": topic, "filter": 'event.kind == "vip"',
        "input": '{"id": event.id, "amount": event.amount}', "start": "earliest"})

    first = EventRouter(sched_settings)
    await first.start([trigger])
    await drain(first, lambda: first.counts["records"] >= N // 2)
    assert first.consumer is not None

    async def crash(*a: Any, **k: Any) -> None:  # published, then died before committing
        raise SystemExit("killed before the commit")

    first.consumer.commit = crash  # type: ignore[method-assign]
    try:
        await first.poll_once(200)
    except SystemExit:
        pass
    await first.stop()
    second = EventRouter(sched_settings)
    await second.start([trigger])
    await drain(second)
    await second.stop()

    want = {execution_id_for("wf-events", f"event:{topic}:{p}:{o}") for p, o in vip}
    triggers = await read_topic(sched_settings)
    assert {t["execution_id"] for t in triggers} == want  # exactly those, none lost
    assert len(triggers) > len(want)  # the crashed batch was read and published again
    assert first.counts["undecodable"] + second.counts["undecodable"] >= bad
    assert first.counts["unmatched"] + second.counts["unmatched"] >= N - len(vip)
    sample = orjson.loads(next(t["input"] for t in triggers))
    assert set(sample) == {"id", "amount"} and sample["id"] % 100 == 7

