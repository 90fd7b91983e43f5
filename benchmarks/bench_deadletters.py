"""Dead letters through RabbitMQ and back: N dead letters parked (publisher: execution-events
→ fold → RabbitMQ with publisher confirms, offsets committed after) and bridged back (bridge:
due queue → RetryNodeRequested on Kafka, acked, then the messages acked). Goal ≥ 2,000/s
each way (issue 13).

    python benchmarks/bench_deadletters.py [--n 10000] [--runs 3]

Each run uses its own topic prefix and queues. The execution-events are synthetic
`ExecutionEventBatch` records (start, schedule, dead letter, incident: one record per
execution, as one orchestrator decision would not make, but the publisher reads the same
records either way), written before the clock starts. "parked" = from the publisher's
start to its last confirm (the 1 s ladder rung then moves them to the due queue inside
RabbitMQ); "bridged" = from the bridge's start (all N due) to the last message acked.
Writes benchmarks/results/bench_deadletters.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, write_results
from flowlog.aggregates import records
from flowlog.aggregates.execution import events as dev
from flowlog.schemas.codec import Codec
from flowlog.streams.deadletters import topology
from flowlog.streams.deadletters.bridge import Bridge
from flowlog.streams.deadletters.publisher import Publisher
from flowlog.streams.runtime.kafka import catalog, ensure_topics, partition_of, producer

from flowlog.settings import Settings


def _batch(execution_id: str, now: datetime) -> dict[str, Any]:
    env = {"occurred_at": now, "execution_id": execution_id, "workflow_id": "bench-dl",
           "workflow_version": 1, "correlation_id": None, "causation_id": "cause",
           "tenant": "default"}

    def e(cls: Any, seq: int, **kw: Any) -> Any:
        return cls(event_id=records.execution_event_id(execution_id, seq), seq=seq,
                   **env, **kw)

    error = {"type": "TaskError", "message": "503", "retryable": True}
    evs = [e(dev.ExecutionStarted, 1, input={"k": 1}, trigger_source="manual",
             dedup_key=None),
           e(dev.NodeScheduled, 2, node_id="call", node_type="webhook", attempt=1,
             input={"order": execution_id}, task_key=f"{execution_id}:call:1"),
           e(dev.NodeDeadLettered, 3, node_id="call", attempt=1, error=error),
           e(dev.IncidentRaised, 4, incident_id="call:1", node_id="call",
             reason="TaskError: 503")]
    return records.batch_record(evs, "cause")


async def _until(check: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark did not finish in time")
        await asyncio.sleep(0.01)


async def one_run(n: int) -> dict[str, float]:
    s = Settings().model_copy(update={
        "topic_prefix": f"bench{uuid.uuid4().hex[:8]}.", "deadletter_ladder": [1.0],
        "default_partitions": 6})
    await asyncio.to_thread(ensure_topics, s)
    codec = Codec.from_settings(s)
    cat = catalog(s)
    topic, parts = cat.name("execution-events"), cat.topics["execution-events"].partitions
    kafka = producer(s)
    await kafka.start()
    stop = asyncio.Event()
    publisher = Publisher(s, None)
    task = asyncio.create_task(publisher.run(stop))
    # steady state: the publisher has joined its group and holds every partition before
    # the records come (the broker's initial rebalance delay is ~3 s of fixed start-up)
    await _until(lambda: len(publisher.parts) == parts, 60)
    now = datetime.now(UTC)
    values = [(f"bench-{i}", codec.encode("ExecutionEventBatch", _batch(f"bench-{i}", now)))
              for i in range(n)]
    t0, c0 = time.perf_counter(), time.process_time()
    futs = [await kafka.send(topic, v, key=x.encode(), partition=partition_of(x, parts))
            for x, v in values]
    await asyncio.gather(*futs)
    await _until(lambda: publisher.published >= n, 600)
    parked_s = time.perf_counter() - t0
    parked_cpu = time.process_time() - c0
    stop.set()
    await task
    # every letter is due 1 s after it was parked: wait until the due queue holds them all
    conn = await topology.connect(s)
    ch = await conn.channel()
    topo = await topology.declare(ch, s)

    async def due_count() -> int:
        q = await ch.declare_queue(topo.due.name, passive=True)
        return int(q.declaration_result.message_count or 0)

    deadline = time.monotonic() + 120
    while await due_count() < n:
        if time.monotonic() > deadline:
            raise TimeoutError("not every dead letter became due")
        await asyncio.sleep(0.1)
    bridge = Bridge(s, kafka)
    stop2 = asyncio.Event()
    t1, c1 = time.perf_counter(), time.process_time()
    btask = asyncio.create_task(bridge.run(stop2))
    await _until(lambda: bridge.bridged >= n, 600)
    bridged_s = time.perf_counter() - t1
    bridged_cpu = time.process_time() - c1
    stop2.set()
    await btask
    ceiling = await _raw_ceiling(conn, ch, s, min(n, 5000))
    await topology.delete(ch, s)
    await conn.close()
    await kafka.stop()
    return {"parked_per_s": n / parked_s, "bridged_per_s": n / bridged_s,
            "parked_s": parked_s, "bridged_s": bridged_s,
            # per second of this process's CPU: what one free core would carry
            "parked_per_cpu_s": n / parked_cpu, "bridged_per_cpu_s": n / bridged_cpu,
            "raw_publish_ceiling_per_s": ceiling}


async def _raw_ceiling(conn: Any, ch: Any, s: Settings, n: int) -> float:
    """The broker's pace right now: persistent 600-byte messages with confirms into a quorum
    queue through aiormq, 500 in flight, nothing else (the context for the figures)."""
    from pamqp.commands import Basic

    raw = await ch.get_underlay_channel()
    name = f"{topology.prefix(s)}.ceiling"
    await raw.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    confirmed = await conn.channel(publisher_confirms=True)
    pub = await confirmed.get_underlay_channel()
    props = Basic.Properties(delivery_mode=2, message_id="m", content_type="application/json")
    t = time.perf_counter()
    for i in range(0, n, 500):
        await asyncio.gather(*(pub.basic_publish(b"x" * 600, routing_key=name,
                                                 properties=props)
                               for _ in range(min(500, n - i))))
    rate = n / (time.perf_counter() - t)
    await raw.queue_delete(name)
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    runs = []
    for i in range(a.runs):
        r = asyncio.run(one_run(a.n))
        print(f"run {i + 1}: parked {r['parked_per_s']:,.0f}/s ({r['parked_s']:.2f}s, "
              f"{r['parked_per_cpu_s']:,.0f} per CPU-s), bridged back "
              f"{r['bridged_per_s']:,.0f}/s ({r['bridged_s']:.2f}s, "
              f"{r['bridged_per_cpu_s']:,.0f} per CPU-s); raw publish ceiling "
              f"{r['raw_publish_ceiling_per_s']:,.0f}/s")
        runs.append(r)
    fig = {"n": a.n, "runs": runs,
           "parked_per_s_median": median([r["parked_per_s"] for r in runs]),
           "bridged_per_s_median": median([r["bridged_per_s"] for r in runs]),
           "raw_publish_ceiling_per_s_median": median(
               [r["raw_publish_ceiling_per_s"] for r in runs]),
           "load_average_1m_at_end": os.getloadavg()[0],
           "goal_per_s": 2000,
           "command": f"python benchmarks/bench_deadletters.py --n {a.n} --runs {a.runs}"}
    print(f"median of {a.runs}: parked {fig['parked_per_s_median']:,.0f}/s, bridged back "
          f"{fig['bridged_per_s_median']:,.0f}/s (goal 2,000/s each way)")
    print(f"wrote {write_results('bench_deadletters', fig)}")


if __name__ == "__main__":
    main()
