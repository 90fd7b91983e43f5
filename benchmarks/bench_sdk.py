"""Producer SDK throughput to the local broker (`make up`): typed events in, Kafka out,
all acknowledged (idempotent producer, acks=all, lz4, batching, delivery reports).

    python benchmarks/bench_sdk.py [--n 200000] [--runs 5] [--bootstrap 127.0.0.1:9092]

Three cases: pre-built typed events (the SDK's cost: encode + produce + delivery),
events built from dicts through the SDK's validation (what `flowlog publish --jsonl`
does), and pre-encoded bytes straight to confluent-kafka (the client's ceiling). Each
run ends when every delivery report has arrived. Writes benchmarks/results/bench_sdk.json.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, write_results
from flowlog.schemas.events import TriggerReceived
from flowlog.schemas.sdk import EventProducer
from flowlog.schemas.topics import TopicCatalog, apply_topics

from flowlog.settings import Settings


def payload(i: int) -> dict[str, Any]:
    return {"event_type": "TriggerReceived", "workflow_id": "invoice-triage",
            "workflow_version": 3, "source": "webhook", "dedup_key": f"invoice-{i}",
            "input": {"invoice": i, "amount": 129.5, "vendor": "acme"}}


def run(producer: EventProducer, items: list[Any]) -> float:
    failures: list[BaseException] = []

    def check(f: Future[Any]) -> None:
        if f.exception() is not None:
            failures.append(f.exception())  # type: ignore[arg-type]

    start = time.perf_counter()
    last = None
    for item in items:
        last = producer.publish(item)
    left = producer.flush(120)
    elapsed = time.perf_counter() - start
    if last is not None:
        last.add_done_callback(check)
    if left or failures:
        raise SystemExit(f"{left} undelivered, failures: {failures[:3]}")
    return len(items) / elapsed


def run_many(producer: EventProducer, items: list[Any]) -> float:
    start = time.perf_counter()
    summary = producer.publish_many(items, timeout=120)
    elapsed = time.perf_counter() - start
    if not summary.ok or sum(summary.sent.values()) != len(items):
        raise SystemExit(f"not all delivered: {summary}")
    return len(items) / elapsed


def raw_run(producer: EventProducer, topic: str, values: list[tuple[bytes, bytes]]) -> float:
    p = producer._producer
    start = time.perf_counter()
    for key, value in values:
        while True:
            try:
                p.produce(topic, value, key)
                break
            except BufferError:
                p.poll(0.05)
    left = p.flush(120)
    if left:
        raise SystemExit(f"{left} undelivered")
    return len(values) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args()
    settings = Settings(topic_prefix=f"bench{uuid.uuid4().hex[:6]}.")
    bootstrap = args.bootstrap or settings.bootstrap_servers
    catalog = TopicCatalog.from_settings(settings)
    apply_topics(catalog, bootstrap)
    typed = [TriggerReceived.validate_dict(payload(i)) for i in range(args.n)]
    dicts = [payload(i) for i in range(args.n // 4)]
    producer = EventProducer(bootstrap, catalog=catalog)
    encoded = [(e.key.encode(), producer.codec.encode_event(e)) for e in typed]
    figures: dict[str, Any] = {"n": args.n, "event_bytes": len(encoded[0][1]),
                               "partitions": settings.default_partitions}
    try:
        run(producer, typed[:10_000])  # warm up connections and caches
        cases = {
            "typed events (SDK publish_many)": lambda: run_many(producer, typed),
            "typed events (SDK publish, a future each)": lambda: run(producer, typed),
            "dicts validated by the SDK (publish_many)": lambda: run_many(producer, dicts),
            "pre-encoded bytes (raw confluent-kafka)":
                lambda: raw_run(producer, catalog.name("triggers"), encoded),
        }
        for name, fn in cases.items():
            rates = [fn() for _ in range(args.runs)]
            figures[name] = {"events_per_second_median": round(median(rates)),
                             "runs": [round(r) for r in rates]}
            print(f"{name:42s} {median(rates):>10,.0f} events/s   (runs: "
                  + ", ".join(f"{r:,.0f}" for r in rates) + ")")
    finally:
        producer.close()
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": bootstrap})
        for fut in admin.delete_topics([s.name for s in catalog]).values():
            try:
                fut.result(timeout=30)
            except Exception:
                pass
    print(f"event: TriggerReceived, {figures['event_bytes']} bytes; "
          f"results: {write_results('bench_sdk', figures)}")


if __name__ == "__main__":
    main()
