"""Kafka on this machine: broker start time and 1 KB produce/consume throughput with
confluent-kafka, aiokafka, and through a trivial Faust agent (read one, write one).

    python benchmarks/bench_kafka.py [--runs 3] [--n 200000]

Needs the local broker (`make up`). Prints a table; writes benchmarks/results/kafka.json.
Each figure is the median of --runs runs; the broker shares the 2 cores with the client.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

from _common import median, write_results
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from flowlog.infra.services.kafka import Kafka
from rich.console import Console
from rich.table import Table

from flowlog.settings import REPO_ROOT, Settings

PAYLOAD = os.urandom(1024)
PARTITIONS = 4
console = Console()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_start_times(runs: int) -> tuple[float, list[float]]:
    """Seconds from launch to a broker answering metadata: first (format + start), then
    restarts of the same data folder."""
    state = REPO_ROOT / ".state" / f"bench-{uuid.uuid4().hex[:6]}"
    svc = Kafka(Settings(state_dir=state, kafka_port=free_port(),
                         kafka_controller_port=free_port()))
    times: list[float] = []
    try:
        for _ in range(runs + 1):
            t0 = time.monotonic()
            svc.up()
            times.append(time.monotonic() - t0)
            svc.down()
    finally:
        svc.down()
        shutil.rmtree(state, ignore_errors=True)
    return times[0], times[1:]


def make_topic(bootstrap: str, name: str) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(30)
    return name


def drop_topics(bootstrap: str, names: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.delete_topics(names).values():
        try:
            fut.result(30)
        except Exception:
            pass


def confluent_produce(bootstrap: str, topic: str, n: int) -> float:
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "batch.size": 1_000_000,
                  "queue.buffering.max.messages": 1_000_000})
    t0 = time.perf_counter()
    for i in range(n):
        while True:
            try:
                p.produce(topic, PAYLOAD, key=str(i).encode())
                break
            except BufferError:
                p.poll(0.01)
        if i % 10000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    return n / (time.perf_counter() - t0)


def confluent_consume(bootstrap: str, topic: str, n: int) -> float:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"b-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "fetch.max.bytes": 52428800})
    c.subscribe([topic])
    got = 0
    t0 = None
    while got < n:
        msgs = c.consume(num_messages=5000, timeout=1.0)
        if msgs and t0 is None:
            t0 = time.perf_counter()
        got += sum(1 for m in msgs if m.error() is None)
    rate = n / (time.perf_counter() - (t0 or 0))
    c.close()
    return rate


async def aiokafka_produce(bootstrap: str, topic: str, n: int) -> float:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                         linger_ms=5, max_batch_size=1_000_000)
    await p.start()
    t0 = time.perf_counter()
    try:
        pending = []
        for i in range(n):
            pending.append(await p.send(topic, PAYLOAD, key=str(i).encode()))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await p.stop()
    return n / (time.perf_counter() - t0)


async def aiokafka_consume(bootstrap: str, topic: str, n: int) -> float:
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"b-{uuid.uuid4()}",
                         auto_offset_reset="earliest", enable_auto_commit=False,
                         max_partition_fetch_bytes=10_000_000, fetch_max_bytes=52428800)
    await c.start()
    got = 0
    t0 = None
    try:
        while got < n:
            batch = await c.getmany(timeout_ms=1000, max_records=10000)
            if batch and t0 is None:
                t0 = time.perf_counter()
            got += sum(len(v) for v in batch.values())
    finally:
        await c.stop()
    return n / (time.perf_counter() - (t0 or 0))


def faust_echo(bootstrap: str, n: int) -> float:
    """Messages per second through the trivial echo agent: pre-load n records, start the
    worker, time from its first output to its n-th."""
    tag = uuid.uuid4().hex[:8]
    src, dst = make_topic(bootstrap, f"bench-{tag}-in"), make_topic(bootstrap, f"bench-{tag}-out")
    confluent_produce(bootstrap, src, n)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"b-{tag}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([dst])
    env = {**os.environ, "FLOWLOG_ECHO_IN": src, "FLOWLOG_ECHO_OUT": dst,
           "FLOWLOG_ECHO_APP": f"bench-{tag}", "FLOWLOG_ECHO_PARTITIONS": str(PARTITIONS),
           "FLOWLOG_KAFKA_BOOTSTRAP": bootstrap}
    worker = subprocess.Popen(
        [sys.executable, "-m", "faust", "-A", "benchmarks.faust_echo", "worker", "-l", "warn"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT)
    got, t0 = 0, None
    deadline = time.monotonic() + 600
    try:
        while got < n and time.monotonic() < deadline:
            msgs = c.consume(num_messages=5000, timeout=1.0)
            if msgs and t0 is None:
                t0 = time.perf_counter()
            got += sum(1 for m in msgs if m.error() is None)
        rate = got / (time.perf_counter() - (t0 or time.perf_counter()))
    finally:
        worker.terminate()
        worker.wait(30)
        c.close()
        drop_topics(bootstrap, [src, dst])
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--n", type=int, default=200_000, help="messages per confluent run")
    ap.add_argument("--n-aiokafka", type=int, default=100_000)
    ap.add_argument("--n-faust", type=int, default=30_000)
    ap.add_argument("--skip-start", action="store_true", help="skip broker start timing")
    args = ap.parse_args()
    bootstrap = Settings().bootstrap_servers
    figures: dict[str, float | list[float]] = {}

    if not args.skip_start:
        first, restarts = broker_start_times(args.runs)
        figures["broker_first_start_s"] = round(first, 2)
        figures["broker_restart_s_median"] = round(median(restarts), 2)
        figures["broker_restart_s_runs"] = [round(x, 2) for x in restarts]

    rates: dict[str, list[float]] = {k: [] for k in (
        "confluent_produce", "confluent_consume", "aiokafka_produce", "aiokafka_consume",
        "faust_echo")}
    for _ in range(args.runs):
        topic = make_topic(bootstrap, f"bench-{uuid.uuid4().hex[:8]}")
        rates["confluent_produce"].append(confluent_produce(bootstrap, topic, args.n))
        rates["confluent_consume"].append(confluent_consume(bootstrap, topic, args.n))
        topic2 = make_topic(bootstrap, f"bench-{uuid.uuid4().hex[:8]}")
        rates["aiokafka_produce"].append(asyncio.run(
            aiokafka_produce(bootstrap, topic2, args.n_aiokafka)))
        rates["aiokafka_consume"].append(asyncio.run(
            aiokafka_consume(bootstrap, topic2, args.n_aiokafka)))
        drop_topics(bootstrap, [topic, topic2])
        rates["faust_echo"].append(faust_echo(bootstrap, args.n_faust))

    table = Table("figure", "median", "runs")
    for key, values in rates.items():
        figures[f"{key}_msgs_per_s_median"] = round(median(values))
        figures[f"{key}_msgs_per_s_runs"] = [round(v) for v in values]
        table.add_row(f"{key} (1 KB msgs/s)", f"{median(values):,.0f}",
                      ", ".join(f"{v:,.0f}" for v in values))
    if "broker_first_start_s" in figures:
        table.add_row("broker first start (format + start), s",
                      str(figures["broker_first_start_s"]), "")
        table.add_row("broker restart, s", str(figures["broker_restart_s_median"]),
                      ", ".join(map(str, figures["broker_restart_s_runs"])))  # type: ignore[arg-type]
    console.print(table)
    console.print(f"written to {write_results('kafka', figures)}")


if __name__ == "__main__":
    main()
