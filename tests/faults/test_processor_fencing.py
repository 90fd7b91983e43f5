"""Fault test: a processor paused (SIGSTOP) with its transaction open, past its session
timeout, while another processor takes over its partitions; then resumed.

Processor A stops itself before committing one transaction whose writes (decisions, node
tasks, offsets) are already in the log (FLOWLOG_FAULT_PROCESSOR_PAUSE_BEFORE_COMMIT), so
its writes are certainly "late" when it resumes. Processor B joins, gets A's partitions
once A's session times out, and its `init_transactions` on the same transactional ids
fences A. Then A is resumed (SIGCONT): its commit must fail (fenced) and its transaction
stay aborted; both processors go on sharing the partitions.

Checks, over execution-events read as the engine reads it (read_committed):
* every execution ends with exactly one terminal event, ExecutionSucceeded;
* its seqs are 1..n with no gaps, and a (execution, seq) seen twice is the same event;
* read_uncommitted shows more batch records than read_committed: A's aborted writes did
  reach the log, and no consumer of the engine sees them;
* A logged that it was fenced.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from flowlog.schemas.codec import Codec
from flowlog.schemas.events import TriggerReceived
from flowlog.schemas.sdk import EventProducer
from flowlog.streams.runtime.kafka import catalog, ensure_topics, seek_to_start
from flowlog.streams.runtime.tools import apply_definition

from flowlog.settings import Settings
from tests.support.faults import Proc, terminal_count, worker_env

pytestmark = pytest.mark.faults

DEFINITION = """
id: fenced
nodes:
  a: {type: tool, tool: recorded, input: {n: "1"}}
  b: {type: tool, tool: recorded, needs: [a], input: {n: "2"}}
  c: {type: tool, tool: recorded, needs: [b], input: {n: "3"}}
"""
FIRST, SECOND = 200, 50


async def _read(settings: Settings, isolation: str) -> tuple[int, list[dict[str, Any]]]:
    """(batch records, events) of execution-events under one isolation level."""
    codec = Codec.from_settings(settings)
    topic = catalog(settings).name("execution-events")
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                group_id=None, auto_offset_reset="earliest",
                                isolation_level=isolation)
    await consumer.start()
    events: list[dict[str, Any]] = []
    batches = 0
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.default_partitions)]
        consumer.assign(tps)
        await seek_to_start(consumer, tps)
        ends = await consumer.end_offsets(tps)
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            for msgs in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                for msg in msgs:
                    batches += 1
                    events += codec.decode(msg.value).record["events"]
    finally:
        await consumer.stop()
    return batches, events


def _state(proc: Proc) -> str:
    assert proc.popen is not None
    return Path(f"/proc/{proc.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


async def _until(what: str, check: Any, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {within:.0f}s: {what}")
        await asyncio.sleep(0.5)


async def test_a_paused_processor_is_fenced_and_its_late_writes_are_aborted(
        settings: Settings, kafka_bootstrap: str, tmp_path: Path) -> None:
    s = settings.model_copy(update={"default_partitions": 4,
                                    "tool_modules": ["tests.e2e.e2e_tools"]})
    await asyncio.to_thread(ensure_topics, s)
    definition = tmp_path / "fenced.yaml"
    definition.write_text(DEFINITION)
    await asyncio.to_thread(apply_definition, s, definition)
    # fencing is exactly_once's (transactions); named, whatever the default guarantee
    base = worker_env(s, tmp_path / "runs.log", processing_guarantee="exactly_once")
    logs = tmp_path / "logs"
    logs.mkdir()
    a = Proc("procA", "processor", {**base, "FLOWLOG_FAULT_PROCESSOR_PAUSE_BEFORE_COMMIT": "10"},
             logs)
    b = Proc("procB", "processor", base, logs)
    executor = Proc("exec", "executor", base, logs)
    triggers = [TriggerReceived(workflow_id="fenced", workflow_version=1, source="manual",
                                input={"i": i}) for i in range(FIRST + SECOND)]
    ids = [t.execution_id for t in triggers]

    async def publish(batch: list[TriggerReceived]) -> None:
        def send() -> None:
            with EventProducer.from_settings(s) as producer:
                for i in range(0, len(batch), 10):
                    assert producer.publish_many(batch[i:i + 10]).ok

        await asyncio.to_thread(send)

    async def finished(n: int) -> bool:
        _, events = await _read(s, "read_committed")
        return len(terminal_count(events)) >= n

    a.start()
    executor.start()
    try:
        await publish(triggers[:FIRST])

        async def a_stopped() -> bool:
            assert a.alive(), "processor A exited"
            return _state(a) == "T"

        await _until("processor A paused itself mid-transaction", a_stopped, 120)
        b.start()  # takes A's partitions once A's session (6 s) times out
        await _until(f"{FIRST} executions finished by B", lambda: finished(FIRST), 180)
        assert a.popen is not None
        os.kill(a.popen.pid, signal.SIGCONT)

        async def a_fenced() -> bool:
            text = "".join(p.read_text(errors="replace") for p in logs.glob("procA.*.log"))
            return "fenced" in text

        await _until("processor A fenced after SIGCONT", a_fenced, 120)
        await publish(triggers[FIRST:])  # both processors share the partitions again
        await _until(f"{FIRST + SECOND} executions finished", lambda: finished(len(ids)), 180)
        assert a.alive() and b.alive(), "a processor exited"
    finally:
        for p in (a, b, executor):
            if p.alive() and _state(p) == "T":
                assert p.popen is not None
                os.kill(p.popen.pid, signal.SIGCONT)
            p.stop()

    committed_batches, events = await _read(s, "read_committed")
    all_batches, _ = await _read(s, "read_uncommitted")
    ended = terminal_count(events)
    assert set(ended) == set(ids), f"{len(set(ids) - set(ended))} executions never ended"
    assert all(n == 1 for n in ended.values()), {k: n for k, n in ended.items() if n != 1}
    by_exec: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for e in events:
        by_exec[e["execution_id"]][e["seq"]].append(e)
    outcomes: Counter[str] = Counter()
    rewritten = 0
    for execution_id, seqs in by_exec.items():
        assert sorted(seqs) == list(range(1, len(seqs) + 1)), f"gap in {execution_id}"
        for copies in seqs.values():
            rewritten += len(copies) - 1
            assert all(c == copies[0] for c in copies[1:]), f"conflict in {execution_id}"
        outcomes[seqs[max(seqs)][0]["event_type"]] += 1
    assert outcomes == Counter({"ExecutionSucceeded": len(ids)}), outcomes
    aborted = all_batches - committed_batches
    assert aborted > 0, "A's late writes never reached the log: nothing was fenced"
    print(f"\nprocessor fencing: {len(ids)} executions, {len(events)} committed events, "
          f"{aborted} aborted batch records (A's late writes), "
          f"{rewritten} identical re-writes")
