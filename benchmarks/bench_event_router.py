"""Event-trigger routing cost: the raw aiokafka router against the same work as a Faust agent.

    python benchmarks/bench_event_router.py [--n 100000] [--runs 3]

A topic of N JSON records (3 partitions), 1 % of which match the trigger's CEL filter.
Both variants do the same per record: decode the JSON, evaluate the filter, and for a
match build the TriggerReceived (dedup key topic:partition:offset) and publish it.
* raw: ``streams.triggers.events.EventRouter`` (aiokafka consumer group, batches,
  publish_many, commit after publish), in this process;
* faust: a faust-streaming app with one agent (concurrency 1) on the topic, in a
  subprocess; matches are sent with the agent's producer.
Timed from the group's first committed offset to all N committed (start-up excluded), so
records/s compares the per-record cost. Writes benchmarks/results/event-router.json.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, write_results

FILTER = 'event.kind == "vip"'
INPUT = '{"id": event.id, "amount": event.amount}'


def produce(bootstrap: str, topic: str, n: int) -> None:
    import orjson
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                  "queue.buffering.max.messages": 500_000})
    for i in range(n):
        p.produce(topic, orjson.dumps({"kind": "vip" if i % 100 == 7 else "std", "id": i,
                                       "amount": i % 250}), key=str(i).encode())
        if i % 10_000 == 0:
            p.poll(0)
    assert p.flush(60) == 0


def committed(bootstrap: str, group: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
        return sum(max(0, tp.offset) for tp in parts)
    finally:
        c.close()


def watch(bootstrap: str, group: str, topic: str, n: int, within: float = 600) -> float:
    """Seconds from the first commit to n records committed (rate over that span)."""
    deadline = time.monotonic() + within
    first: tuple[float, int] | None = None
    while time.monotonic() < deadline:
        done = committed(bootstrap, group, topic)
        now = time.monotonic()
        if done and first is None:
            first = (now, done)
        if done >= n and first is not None:
            span = now - first[0]
            return (n - first[1]) / span if span > 0 else float("nan")
        time.sleep(0.2)
    raise SystemExit(f"group {group} did not finish in {within}s")


def run_raw(settings: Any, topic: str, n: int) -> float:
    from flowlog.streams.triggers.events import EventRouter, EventTrigger

    trigger = EventTrigger.from_config("bench-events", 1, 0, "default", {
        "event": topic, "filter": FILTER, "input": INPUT, "start": "earliest"})

    async def main() -> float:
        router = EventRouter(settings)
        await router.start([trigger])
        try:
            while router.counts["records"] == 0:
                await router.poll_once(200)
            t0, base = time.monotonic(), router.counts["records"]
            while await router.lag() != 0:
                await router.poll_once(200)
            return (router.counts["records"] - base) / (time.monotonic() - t0)
        finally:
            await router.stop()

    return asyncio.run(main())


def faust_worker(bootstrap: str, prefix: str, topic: str) -> None:
    import faust
    from faust import Worker
    from flowlog.schemas.codec import Codec
    from flowlog.streams.triggers.events import EventRouter, EventTrigger

    from flowlog.settings import Settings

    settings = Settings(topic_prefix=prefix)
    app = faust.App(f"{prefix}faust-router", broker=f"kafka://{bootstrap}", store="memory://",
                    datadir=tempfile.mkdtemp(prefix="faust-router-"), value_serializer="raw",
                    key_serializer="raw", web_enabled=False, topic_allow_declare=False,
                    consumer_auto_offset_reset="earliest", producer_linger_ms=5,
                    producer_acks=-1)
    router = EventRouter.__new__(EventRouter)
    router.codec = Codec.from_settings(settings)
    router.counts = __import__("collections").Counter()
    router.by_topic = {topic: [EventTrigger.from_config("bench-events", 1, 0, "default", {
        "event": topic, "filter": FILTER, "input": INPUT})]}
    out = app.topic(f"{prefix}triggers")
    codec = router.codec

    @app.agent(app.topic(topic), concurrency=1)
    async def route(stream: Any) -> None:
        async for event in stream.events():
            for fired in router.route(event.message):
                await out.send(key=fired.execution_id.encode(),
                               value=codec.encode("TriggerReceived", fired.to_avro()))

    Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "faust-worker":
        faust_worker(*sys.argv[2:5])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    from flowlog.streams.runtime.kafka import ensure_topics

    from flowlog.settings import Settings

    figures: dict[str, Any] = {"n": args.n, "match": 0.01, "raw": [], "faust": []}
    for run in range(args.runs):
        prefix = f"evb{uuid.uuid4().hex[:8]}."
        settings = Settings(topic_prefix=prefix)
        ensure_topics(settings)
        topic = f"{prefix}outside"
        produce(settings.bootstrap_servers, topic, args.n)
        raw = run_raw(settings, topic, args.n)
        figures["raw"].append(round(raw))
        proc = subprocess.Popen([sys.executable, __file__, "faust-worker",
                                 settings.bootstrap_servers, prefix, topic])
        try:
            fst = watch(settings.bootstrap_servers, f"{prefix}faust-router", topic, args.n)
        finally:
            proc.terminate()
            proc.wait(30)
        figures["faust"].append(round(fst))
        print(f"run {run + 1}: raw {raw:,.0f} records/s, faust {fst:,.0f} records/s")
    figures["raw_median"] = median(figures["raw"])
    figures["faust_median"] = median(figures["faust"])
    print(f"event router, {args.n:,} records, 1 % matching: raw {figures['raw_median']:,.0f}/s,"
          f" faust {figures['faust_median']:,.0f}/s (median of {args.runs})")
    figures["load_average_1m_at_end"] = round(__import__("os").getloadavg()[0], 2)
    print(write_results("event-router", figures))


if __name__ == "__main__":
    main()
