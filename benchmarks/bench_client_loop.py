"""One role loop on two Kafka clients: aiokafka (asyncio, pure Python protocol) against
confluent-kafka (librdkafka: I/O in C threads). Issue 8, item 5.

    python benchmarks/bench_client_loop.py [--records 100000] [--runs 3] [--decode]

The loop is the shape of every engine role: consume a batch from the input topic (6
partitions, pre-filled with real `TriggerReceived` records from the codec), produce one
record per input to the output topic keyed like the input (the same bytes; with
``--decode`` each input is decoded and the output re-encoded by the codec, as the roles
do), wait for every acknowledgement of the batch, then commit the batch's offsets
(commit-after-write, the engine's at-least-once rule). Producers are idempotent with
acks=all on both. Three loops: aiokafka in asyncio (today's roles); confluent-kafka in a
plain synchronous loop (its ceiling); confluent-kafka behind asyncio (consume in a worker
thread, produce through delivery-report futures, one per record or one per batch: what
the roles would run).
Each run reads the whole input under a new group; runs alternate between the clients.
Reported per client: records/s (median of the runs) and process CPU per record (user +
system of this process, all threads: librdkafka's too).
Writes benchmarks/results/client-loop.json. Needs `make up`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import resource
import statistics
import threading
import time
import uuid
from typing import Any

from _common import write_results

from flowlog.settings import Settings

PARTITIONS = 6


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def prefill(bootstrap: str, topic: str, n: int) -> list[bytes]:
    from confluent_kafka import Producer
    from flowlog.schemas.codec import Codec
    from flowlog.schemas.events import TriggerReceived

    codec = Codec()
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4",
                  "partitioner": "murmur2_random", "queue.buffering.max.messages": 500000})
    sample = []
    for i in range(n):
        e = TriggerReceived(workflow_id="bench-5node", workflow_version=0, source="manual",
                            input={"i": i})
        value = codec.encode_event(e)
        if i < 3:
            sample.append(value)
        while True:
            try:
                p.produce(topic, value=value, key=e.execution_id.encode())
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    if p.flush(120):
        raise SystemExit("prefill not delivered")
    return sample


def transform(codec: Any, value: bytes) -> bytes:
    decoded = codec.decode(value)
    return codec.encode(decoded.name, decoded.record)


async def run_aiokafka(bootstrap: str, src: str, dst: str, n: int,
                       decode: bool) -> dict[str, float]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from flowlog.schemas.codec import Codec

    codec = Codec()
    consumer = AIOKafkaConsumer(src, bootstrap_servers=bootstrap,
                                group_id=f"loop-a-{uuid.uuid4().hex[:6]}",
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_poll_records=500)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                acks="all", linger_ms=0)
    await consumer.start()
    await producer.start()
    done = 0
    try:
        c0, t0 = cpu_s(), time.perf_counter()
        while done < n:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            futs = []
            offsets = {}
            for tp, msgs in batches.items():
                for m in msgs:
                    value = transform(codec, m.value) if decode else m.value
                    futs.append(await producer.send(dst, value=value, key=m.key,
                                                    partition=m.partition))
                offsets[tp] = msgs[-1].offset + 1
            if futs:
                await asyncio.gather(*futs)
                await consumer.commit(offsets)
                done += len(futs)
        wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    finally:
        await producer.stop()
        await consumer.stop()
    return {"records_per_s": done / wall, "cpu_us_per_record": cpu / done * 1e6}


def run_confluent(bootstrap: str, src: str, dst: str, n: int, decode: bool) -> dict[str, float]:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from flowlog.schemas.codec import Codec

    codec = Codec()
    consumer = Consumer({"bootstrap.servers": bootstrap,
                         "group.id": f"loop-c-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "fetch.wait.max.ms": 10})
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 0})
    consumer.subscribe([src])
    done = 0
    try:
        c0, t0 = cpu_s(), time.perf_counter()
        while done < n:
            msgs = consumer.consume(num_messages=500, timeout=0.2)
            offsets: dict[int, int] = {}
            sent = 0
            for m in msgs:
                if m.error() is not None:
                    continue
                value = transform(codec, m.value()) if decode else m.value()
                producer.produce(dst, value=value, key=m.key(), partition=m.partition())
                offsets[m.partition()] = m.offset() + 1
                sent += 1
            if sent:
                if producer.flush(30):  # every acknowledgement of the batch
                    raise RuntimeError("not acknowledged within 30 s")
                consumer.commit(offsets=[TopicPartition(src, p, o) for p, o in offsets.items()],
                                asynchronous=False)
                done += sent
        wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    finally:
        consumer.close()
    return {"records_per_s": done / wall, "cpu_us_per_record": cpu / done * 1e6}


class AsyncRdProducer:
    """confluent-kafka's Producer behind asyncio futures: ``send`` returns a future the
    delivery report completes. A thread serves the delivery reports (librdkafka's poll);
    reports are handed to the loop in bunches (one wake-up per bunch, not per record).
    Headers pass through (confluent_kafka.aio.AIOProducer refuses them in batch mode)."""

    def __init__(self, conf: dict[str, Any]) -> None:
        from confluent_kafka import Producer

        self.loop = asyncio.get_running_loop()
        self.producer = Producer(conf)
        self.reports: collections.deque[tuple[asyncio.Future[Any], Any, Any]] = (
            collections.deque())
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.halt.is_set():
            self.producer.poll(0.05)

    def _report(self, fut: asyncio.Future[Any], err: Any, msg: Any) -> None:
        first = not self.reports
        self.reports.append((fut, err, msg))
        if first:
            self.loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        while self.reports:
            fut, err, msg = self.reports.popleft()
            if fut.done():
                continue
            if err is not None:
                fut.set_exception(RuntimeError(str(err)))
            else:
                fut.set_result(msg)

    def send(self, topic: str, value: bytes, key: bytes | None,
             partition: int) -> asyncio.Future[Any]:
        fut = self.loop.create_future()
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, partition=partition,
                                      on_delivery=lambda err, msg, f=fut: self._report(
                                          f, err, msg))
                return fut
            except BufferError:
                self.producer.poll(0.01)

    def send_batch(self, records: list[tuple[str, bytes, bytes | None, int]]
                   ) -> asyncio.Future[Any]:
        """One future for a batch: done when every record of it is acknowledged (what the
        commit-after-write needs), failed with the first error."""
        fut = self.loop.create_future()
        left = [len(records)]
        if not records:
            fut.set_result(0)
            return fut

        def delivered(err: Any, msg: Any) -> None:
            left[0] -= 1
            if err is not None or left[0] == 0:
                self._report(fut, err, len(records))

        for topic, value, key, partition in records:
            while True:
                try:
                    self.producer.produce(topic, value=value, key=key, partition=partition,
                                          on_delivery=delivered)
                    break
                except BufferError:
                    self.producer.poll(0.01)
        return fut

    def close(self) -> None:
        self.producer.flush(30)
        self.halt.set()
        self.thread.join(5)


async def run_confluent_asyncio(bootstrap: str, src: str, dst: str, n: int,
                                decode: bool, per_record: bool) -> dict[str, float]:
    """The aiokafka loop's shape on confluent-kafka: consume in a worker thread (librdkafka
    releases the GIL), produce through `AsyncRdProducer`, commit once the batch is acked."""
    from confluent_kafka import Consumer, TopicPartition
    from flowlog.schemas.codec import Codec

    codec = Codec()
    loop = asyncio.get_running_loop()
    consumer = Consumer({"bootstrap.servers": bootstrap,
                         "group.id": f"loop-ca-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "fetch.wait.max.ms": 10})
    producer = AsyncRdProducer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                "acks": "all", "linger.ms": 0})
    consumer.subscribe([src])
    done = 0
    try:
        c0, t0 = cpu_s(), time.perf_counter()
        while done < n:
            msgs = await loop.run_in_executor(None, consumer.consume, 500, 0.2)
            offsets: dict[int, int] = {}
            futs = []
            batch = []
            for m in msgs:
                if m.error() is not None:
                    continue
                value = transform(codec, m.value()) if decode else m.value()
                if per_record:
                    futs.append(producer.send(dst, value, m.key(), m.partition()))
                else:
                    batch.append((dst, value, m.key(), m.partition()))
                offsets[m.partition()] = m.offset() + 1
            if batch:
                await producer.send_batch(batch)
            if futs or batch:
                await asyncio.gather(*futs)
                await loop.run_in_executor(None, lambda o=offsets: consumer.commit(
                    offsets=[TopicPartition(src, p, x) for p, x in o.items()],
                    asynchronous=False))
                done += len(futs) + len(batch)
        wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    finally:
        producer.close()
        consumer.close()
    return {"records_per_s": done / wall, "cpu_us_per_record": cpu / done * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--decode", action="store_true",
                    help="decode each input and encode its output with the codec (the "
                         "roles' per-record work besides the client)")
    args = ap.parse_args()
    from confluent_kafka.admin import AdminClient, NewTopic

    bootstrap = Settings().bootstrap_servers
    tag = uuid.uuid4().hex[:8]
    src, dst = f"bench.loop.{tag}.in", f"bench.loop.{tag}.out"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in (src, dst)]).values():
        fut.result(30)
    figures: dict[str, Any] = {"records": args.records, "decode": args.decode,
                               "load_before": [round(x, 2) for x in os.getloadavg()]}
    clients = ["aiokafka", "confluent-kafka", "confluent-kafka asyncio",
               "confluent-kafka asyncio, a future per batch"]
    results: dict[str, list[dict[str, float]]] = {c: [] for c in clients}
    try:
        prefill(bootstrap, src, args.records)
        for r in range(args.runs):
            order = clients[:: 1 if r % 2 == 0 else -1]
            for client in order:
                if client == "aiokafka":
                    out = asyncio.run(run_aiokafka(bootstrap, src, dst, args.records,
                                                   args.decode))
                elif client == "confluent-kafka":
                    out = run_confluent(bootstrap, src, dst, args.records, args.decode)
                else:
                    out = asyncio.run(run_confluent_asyncio(
                        bootstrap, src, dst, args.records, args.decode,
                        per_record=client == "confluent-kafka asyncio"))
                results[client].append(out)
                print(f"run {r + 1} {client:>15}: {out['records_per_s']:,.0f} records/s, "
                      f"{out['cpu_us_per_record']:.1f} µs CPU per record")
    finally:
        admin.delete_topics([src, dst])
    for client, runs in results.items():
        figures[client] = {
            "records_per_s_median": round(statistics.median(r["records_per_s"] for r in runs)),
            "cpu_us_per_record_median": round(
                statistics.median(r["cpu_us_per_record"] for r in runs), 1),
            "runs": runs}
    a, c = figures["aiokafka"], figures["confluent-kafka asyncio, a future per batch"]
    figures["ratio_records_per_s"] = round(c["records_per_s_median"]
                                           / a["records_per_s_median"], 2)
    figures["ratio_cpu_per_record"] = round(a["cpu_us_per_record_median"]
                                            / c["cpu_us_per_record_median"], 2)
    figures["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"confluent-kafka (asyncio) / aiokafka: {figures['ratio_records_per_s']}× records/s, "
          f"{figures['ratio_cpu_per_record']}× less CPU per record")
    name = "client-loop-decode" if args.decode else "client-loop"
    print(f"written to {write_results(name, figures)}")


if __name__ == "__main__":
    main()
