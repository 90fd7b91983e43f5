"""The transport's own ceiling: the engine's 5-node record flow on raw aiokafka, with no
domain logic, no Avro, no pydantic, no definitions.

    python benchmarks/bench_raw_pingpong.py [--quick] [bench_engine.py options]

The same three roles as the engine, as separate processes, on the same client settings
(idempotent producer, acks=all, linger 2 ms, range assignor, manual commits after the
broker's acks), and the same records per execution (17 written, 17 read by the roles):

    trigger ──► orchestrator ──► events ──► dispatcher ──► tasks ──► executor ──► results
                     ▲                                                               │
                     └───────────────────────────────────────────────────────────────┘

* orchestrator: triggers + results in; per execution a set of finished nodes of
  A → (B, C) → D → E; one `events` record per input (the engine's one batch per decision):
  `S|exec|A` (nodes scheduled), `S|exec|` (nothing new), `D|exec|<time>` (done).
* dispatcher: one `tasks` record per scheduled node.
* executor: one `results` record per task (the no-op).

It is run by the engine benchmark's harness (`bench_engine.py --target raw`): the same
fixed-rate starter, the same sustainability rule and latency figures, so the two read side
by side. Writes benchmarks/results/engine-raw-pingpong.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

NEEDS: dict[str, tuple[str, ...]] = {
    "A": (), "B": ("A",), "C": ("A",), "D": ("B", "C"), "E": ("D",),
}
LAST = "E"
TOPICS = ("triggers", "results", "events", "tasks")
GROUP_TOPICS = {"orchestrator": ("triggers", "results"), "dispatcher": ("events",),
                "executor": ("tasks",)}
#: worker knobs (environment, so `bench_engine.py --target raw --env K=V` sets them):
#: BENCH_RAW_LINGER_MS (default 2, the engine's), BENCH_RAW_LOOP `blocking` (the engine's
#: loop: wait for the acks, then commit, then poll again) or `pipelined` (poll again at once;
#: a second task waits for each batch's acks in order and marks its offsets safe; a third
#: commits the safe offsets every BENCH_RAW_COMMIT_MS, default 100).
LINGER_MS = int(os.environ.get("BENCH_RAW_LINGER_MS", "2"))
LOOP = os.environ.get("BENCH_RAW_LOOP", "blocking")
COMMIT_S = int(os.environ.get("BENCH_RAW_COMMIT_MS", "100")) / 1000
ROLE_GROUP = {"orchestrator": "orchestrator", "dispatcher": "dispatcher", "executor": "executor"}


def ready(done: set[str], scheduled: set[str]) -> list[str]:
    return [n for n, needs in NEEDS.items()
            if n not in scheduled and all(d in done for d in needs)]


def orchestrate(state: dict[str, tuple[set[str], set[str]]], kind: bytes, eid: bytes,
                arg: bytes) -> bytes | None:
    """The orchestrator's step for one trigger (`T`) or result: the `events` record to
    write, or None for a result of an execution already finished."""
    if kind == b"T":
        done, sched = state[eid.decode()] = (set(), set())
    else:
        entry = state.get(eid.decode())
        if entry is None:
            return None
        done, sched = entry
        done.add(arg.decode())
    if LAST in done:
        del state[eid.decode()]
        return b"D|" + eid + b"|" + repr(time.time()).encode()
    new = ready(done, sched)
    sched.update(new)
    return b"S|" + eid + b"|" + ",".join(new).encode()


# --- the roles (run as `bench_raw_pingpong.py worker ROLE --prefix P`) ----------------------

def _producer(bootstrap: str) -> Any:
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                            linger_ms=LINGER_MS, max_batch_size=1_048_576)


def _consumer(bootstrap: str, group: str, topics: list[str]) -> Any:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor

    return AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", partition_assignment_strategy=(RangePartitionAssignor,),
        max_poll_records=500, session_timeout_ms=10_000, heartbeat_interval_ms=2_000)


async def _loop(bootstrap: str, prefix: str, role: str, producer: Any) -> None:
    from aiokafka.structs import OffsetAndMetadata

    group = ROLE_GROUP[role]
    consumer = _consumer(bootstrap, prefix + group, [prefix + t for t in GROUP_TOPICS[group]])
    results_topic = prefix + "results"
    events, tasks, results = prefix + "events", prefix + "tasks", results_topic
    state: dict[str, tuple[set[str], set[str]]] = {}  # exec -> (done, scheduled)
    acked: asyncio.Queue[tuple[list[Any], dict[Any, Any]]] = asyncio.Queue()
    safe: dict[Any, Any] = {}

    async def await_acks() -> None:  # pipelined: in order, batch by batch
        while True:
            sends, offsets = await acked.get()
            await asyncio.gather(*sends)
            safe.update(offsets)

    async def commit_safe() -> None:
        while True:
            await asyncio.sleep(COMMIT_S)
            if safe:
                offsets = dict(safe)
                safe.clear()
                await consumer.commit(offsets)

    helpers = [asyncio.create_task(await_acks()), asyncio.create_task(commit_safe())] \
        if LOOP == "pipelined" else []
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            if not batches:
                continue
            sends = []
            offsets = {}
            for tp, msgs in batches.items():
                p = tp.partition
                for msg in msgs:
                    kind, eid, arg = msg.value.split(b"|", 2)
                    if role == "orchestrator":
                        out = orchestrate(state, kind, eid, arg)
                        if out is None:
                            continue  # a duplicate after the end
                        sends.append(await producer.send(events, out, key=msg.key, partition=p))
                    elif role == "dispatcher":
                        if kind == b"S" and arg:
                            for node in arg.split(b","):
                                sends.append(await producer.send(
                                    tasks, b"K|" + eid + b"|" + node, key=msg.key, partition=p))
                    else:
                        sends.append(await producer.send(
                            results, b"R|" + eid + b"|" + arg, key=msg.key, partition=p))
                offsets[tp] = OffsetAndMetadata(msgs[-1].offset + 1, "")
            if helpers:
                acked.put_nowait((sends, offsets))
                continue
            if sends:
                await asyncio.gather(*sends)
            await consumer.commit(offsets)
    finally:
        for task in helpers:
            task.cancel()
        await consumer.stop()


async def run_worker(bootstrap: str, prefix: str, roles: list[str]) -> None:
    producer = _producer(bootstrap)
    await producer.start()
    try:
        await asyncio.gather(*(_loop(bootstrap, prefix, r, producer) for r in roles))
    finally:
        await producer.stop()


# --- the harness side ----------------------------------------------------------------------

class RawTarget:
    """What `bench_engine.py` needs to drive the raw ping-pong (see its `Target`)."""

    name = "raw"
    description = "raw aiokafka ping-pong of the same 5-node shape (no Avro, no domain)"
    events_base = "events"

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions

    def topic(self, prefix: str, base: str) -> str:
        return prefix + base

    def setup(self, settings: Any) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
        futures = admin.create_topics(
            [NewTopic(settings.topic_prefix + t, self.partitions, 1) for t in TOPICS])
        for fut in futures.values():
            fut.result(30)

    def worker_argv(self, settings: Any, role: str) -> list[str]:
        roles = ["orchestrator", "dispatcher", "executor"] if role == "all" else [role]
        return [sys.executable, str(Path(__file__).resolve()), "worker", *roles,
                "--prefix", settings.topic_prefix, "--bootstrap", settings.bootstrap_servers]

    def groups(self, settings: Any) -> dict[str, int]:
        p = self.partitions
        return {settings.topic_prefix + "orchestrator": 2 * p,
                settings.topic_prefix + "dispatcher": p,
                settings.topic_prefix + "executor": p}

    def starter(self, settings: Any) -> RawStarter:
        return RawStarter(settings.bootstrap_servers, settings.topic_prefix + "triggers")

    @staticmethod
    def completion(value: bytes) -> tuple[str, bool, float] | None:
        if not value.startswith(b"D|"):
            return None
        _, eid, t = value.split(b"|", 2)
        return eid.decode(), True, float(t)


class RawStarter:
    """Triggers as `T|exec|sent_at`, through confluent-kafka (as the SDK sends)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        import uuid

        from confluent_kafka import Producer

        self._uuid = uuid.uuid4
        self.topic = topic
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                  "acks": "all", "linger.ms": 5})

    def send(self) -> tuple[str, float]:
        eid = str(self._uuid())
        t = time.time()
        value = f"T|{eid}|{t!r}".encode()
        while True:
            try:
                self.producer.produce(self.topic, value, eid.encode())
                break
            except BufferError:
                self.producer.poll(0.01)
        self.producer.poll(0)
        return eid, t

    def flush(self) -> int:
        return int(self.producer.flush(30))

    def close(self) -> None:
        self.producer.flush(30)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        ap = argparse.ArgumentParser(prog="bench_raw_pingpong.py worker")
        ap.add_argument("roles", nargs="+", choices=["orchestrator", "dispatcher", "executor"])
        ap.add_argument("--prefix", required=True)
        ap.add_argument("--bootstrap", required=True)
        a = ap.parse_args(sys.argv[2:])
        try:
            asyncio.run(run_worker(a.bootstrap, a.prefix, a.roles))
        except KeyboardInterrupt:
            pass
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_engine

    bench_engine.main(["--target", "raw", *sys.argv[1:]])


if __name__ == "__main__":
    main()
