"""Kafka transactions on this broker: what one processor round costs in the client libraries.

    python benchmarks/bench_txn.py [--rounds 40] [--producers 1,6]

A round = 10 records of 200 bytes to one partition, plus the input offsets, as the
`processor` role does per partition: on aiokafka in a transaction (begin, sends,
`send_offsets_to_transaction`, commit) with N producers at once (one per partition, as the
processor's transactional id per partition needs), on aiokafka without a transaction
(idempotent producer, sends awaited: today's roles), and on confluent-kafka in a
transaction (`send_offsets_to_transaction` with the consumer group metadata, KIP-447).
Prints the round latency p50/p90 per variant and phase; writes benchmarks/results/txn.json.
Needs the local broker (`make up`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from typing import Any

from _common import write_results
from aiokafka import AIOKafkaProducer, TopicPartition
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as CTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from flowlog.settings import Settings


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 1)


async def aiokafka_txn(bootstrap: str, topic: str, i: int, rounds: int,
                       out: list[tuple[float, float, float, float]]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-{i}",
                         enable_idempotence=True, acks="all", retry_backoff_ms=10)
    await p.start()
    try:
        for k in range(rounds):
            t0 = time.perf_counter()
            await p.begin_transaction()
            futs = [await p.send(topic, b"x" * 200, partition=i) for _ in range(10)]
            await asyncio.gather(*futs)
            t1 = time.perf_counter()
            await p.send_offsets_to_transaction({TopicPartition(topic, i): k + 1},
                                                f"{topic}-group")
            t2 = time.perf_counter()
            await p.commit_transaction()
            t3 = time.perf_counter()
            out.append(((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t3 - t0) * 1e3))
    finally:
        await p.stop()


async def aiokafka_plain(bootstrap: str, topic: str, rounds: int) -> list[float]:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await p.start()
    out = []
    try:
        for _ in range(rounds):
            t0 = time.perf_counter()
            futs = [await p.send(topic, b"x" * 200, partition=0) for _ in range(10)]
            await asyncio.gather(*futs)
            out.append((time.perf_counter() - t0) * 1e3)
    finally:
        await p.stop()
    return out


def confluent_txn(bootstrap: str, topic: str, rounds: int) -> list[float]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-cgroup"})
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{topic}-c",
                  "linger.ms": 0})
    p.init_transactions(30)
    out = []
    for k in range(rounds):
        t0 = time.perf_counter()
        p.begin_transaction()
        for _ in range(10):
            p.produce(topic, b"x" * 200, partition=0)
        p.send_offsets_to_transaction([CTopicPartition(topic, 0, k + 1)],
                                      consumer.consumer_group_metadata(), 10)
        p.commit_transaction(10)
        out.append((time.perf_counter() - t0) * 1e3)
    consumer.close()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--producers", default="1,6")
    args = ap.parse_args()
    bootstrap = Settings().bootstrap_servers
    topic = f"bench.txn.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 6, 1)])[topic].result(30)
    figures: dict[str, Any] = {"load_before": [round(x, 2) for x in os.getloadavg()],
                               "rounds": args.rounds, "records_per_round": 10}
    try:
        for n in [int(x) for x in args.producers.split(",")]:
            out: list[tuple[float, float, float, float]] = []
            await asyncio.gather(*(aiokafka_txn(bootstrap, topic, i, args.rounds, out)
                                   for i in range(n)))
            row = {name: {"p50": pct([o[j] for o in out], 0.5),
                          "p90": pct([o[j] for o in out], 0.9)}
                   for j, name in enumerate(("sends_acked", "send_offsets", "commit", "round"))}
            figures[f"aiokafka_txn_{n}_producers_ms"] = row
            print(f"aiokafka transaction, {n} producer(s) at once: {row}")
        plain = await aiokafka_plain(bootstrap, topic, args.rounds)
        figures["aiokafka_plain_round_ms"] = {"p50": pct(plain, 0.5), "p90": pct(plain, 0.9)}
        print(f"aiokafka without transaction: {figures['aiokafka_plain_round_ms']}")
        conf = await asyncio.to_thread(confluent_txn, bootstrap, topic, args.rounds)
        figures["confluent_txn_round_ms"] = {"p50": pct(conf, 0.5), "p90": pct(conf, 0.9)}
        print(f"confluent-kafka transaction (KIP-447 offsets): "
              f"{figures['confluent_txn_round_ms']}")
    finally:
        admin.delete_topics([topic])
    figures["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"written to {write_results('txn', figures)}")


if __name__ == "__main__":
    asyncio.run(main())
