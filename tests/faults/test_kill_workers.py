"""Fault test: 2 orchestrators, 2 executors and a timers process, 500 executions in
flight, random `kill -9` and restarts, and an orchestrator that crashes between writing a
decision and committing its input offsets (FLOWLOG_FAULT_CRASH_AFTER_WRITE: at its N-th
commit after writes, counted from each start).

The crash does not depend on how fast the machine is: it fires on a count of commits, the
crashing orchestrator is not picked for `kill -9` until it has crashed once, and if the
planned triggers are all sent before it crashed, more triggers follow (and are checked like
the others) until it does, within a deadline.

Checks, over the whole execution-events topic:
* every execution ends with exactly one terminal event;
* its seq numbers are 1..n with no gaps; a (execution, seq) written twice must be the same
  event (same id, type and fields), and the count of such re-writes is reported;
* every run of a task carried its task key as the idempotency key, so a (node, attempt)
  that ran twice (a redelivered task) ran with the same key; how many did is reported.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from flowlog.schemas.codec import Codec
from flowlog.schemas.events import TriggerReceived
from flowlog.schemas.sdk import EventProducer
from flowlog.streams.runtime.kafka import catalog, ensure_topics
from flowlog.streams.runtime.tools import TERMINAL, apply_definition

from flowlog.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.faults

EXECUTIONS = int(os.environ.get("FLOWLOG_FAULT_EXECUTIONS", "500"))
CHAOS_SECONDS = float(os.environ.get("FLOWLOG_FAULT_CHAOS_S", "45"))
CRASH_AT_COMMIT = 5  # the crashing orchestrator exits at its 5th commit after writes
CRASH_WAIT_S = 180.0  # beyond the chaos: how long more triggers go in for the first crash
DEFINITION = """
id: chaos
nodes:
  a: {type: tool, tool: recorded, input: {n: "1"}}
  b:
    type: tool
    tool: flaky
    needs: [a]
    input: {succeed_on: "2"}
    retry: {max_attempts: 3, initial_delay: 200ms}
  c: {type: tool, tool: recorded, needs: [b], input: {n: "3"}}
"""


class Proc:
    def __init__(self, name: str, role: str, env: dict[str, str], log_dir: Path) -> None:
        self.name, self.role, self.env, self.log_dir = name, role, env, log_dir
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.log_dir / f"{self.name}.{self.starts}.log", "wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "flowlog.cli", "worker", self.role, "-l", "info"],
            cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        if self.alive():
            assert self.popen is not None
            self.popen.kill()  # SIGKILL
            self.popen.wait()

    def stop(self) -> None:
        if self.alive():
            assert self.popen is not None
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


async def _read_all(settings: Settings) -> list[dict[str, Any]]:
    """Every event of execution-events (decoded batches, flattened)."""
    codec = Codec.from_settings(settings)
    topic = catalog(settings).name("execution-events")
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.bootstrap_servers,
                                group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    events: list[dict[str, Any]] = []
    try:
        tps = consumer.assignment()
        while not tps:
            await asyncio.sleep(0.1)
            tps = consumer.assignment()
        ends = await consumer.end_offsets(list(tps))
        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            for msgs in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                for msg in msgs:
                    events += codec.decode(msg.value).record["events"]
    finally:
        await consumer.stop()
    return events


def _terminal_count(events: list[dict[str, Any]]) -> dict[str, int]:
    ends: dict[str, set[int]] = defaultdict(set)
    for e in events:
        if e["event_type"] in TERMINAL:
            ends[e["execution_id"]].add(e["seq"])
    return {k: len(v) for k, v in ends.items()}


async def test_kill_9_and_crash_after_write(settings: Settings, kafka_bootstrap: str,
                                            tmp_path: Path) -> None:
    s = settings.model_copy(update={"default_partitions": 6,
                                    "tool_modules": ["tests.e2e.e2e_tools"]})
    await asyncio.to_thread(ensure_topics, s)
    definition = tmp_path / "chaos.yaml"
    definition.write_text(DEFINITION)
    await asyncio.to_thread(apply_definition, s, definition)
    runs = tmp_path / "runs.log"
    base = {**os.environ, "FLOWLOG_TOPIC_PREFIX": s.topic_prefix,
            "FLOWLOG_DEFAULT_PARTITIONS": "6", "FLOWLOG_TOOL_MODULES": '["tests.e2e.e2e_tools"]',
            "FLOWLOG_TEST_RUN_LOG": str(runs), "FLOWLOG_EXECUTOR_RATE_LIMITER": "local",
            "FLOWLOG_CONSUMER_SESSION_TIMEOUT_MS": "6000", "PYTHONUNBUFFERED": "1"}
    # a count, not a chance: each life of orch1 exits at its 5th commit after writes, however
    # long it took to start (under load the workers took ~8 s; a chance per batch then often
    # never fired). Every life that gets that far crashes, so crashes repeat during the chaos.
    crashy = {**base, "FLOWLOG_FAULT_CRASH_AFTER_WRITE": str(CRASH_AT_COMMIT)}
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = [Proc("orch1", "orchestrator", crashy, logs), Proc("orch2", "orchestrator", base,
                                                                 logs),
             Proc("exec1", "executor", base, logs), Proc("exec2", "executor", base, logs),
             # the dispatcher by its former name: the alias kept for one release runs here
             Proc("timers", "timers", base, logs)]
    for p in procs:
        p.start()
    rng = random.Random(int(os.environ.get("FLOWLOG_FAULT_SEED", "5")))
    kills: Counter[str] = Counter()
    crashes = 0
    ids: list[str] = []
    extra = 0  # triggers beyond the plan, sent while waiting for the first injected crash
    try:
        # triggers trickle in during the chaos so executions are in flight when workers die
        triggers = [TriggerReceived(workflow_id="chaos", workflow_version=1, source="manual",
                                    input={"i": i}) for i in range(EXECUTIONS)]
        ids = [t.execution_id for t in triggers]
        producer = EventProducer.from_settings(s)
        loop = asyncio.get_running_loop()
        started = loop.time()
        next_kill = started + rng.uniform(2, 5)
        sent = 0
        crash_deadline = started + CHAOS_SECONDS + CRASH_WAIT_S
        while loop.time() - started < CHAOS_SECONDS or sent < len(triggers) \
                or (crashes == 0 and loop.time() < crash_deadline):
            elapsed = loop.time() - started
            due = min(len(triggers), int(len(triggers) * elapsed / (CHAOS_SECONDS * 0.6)) + 1)
            if due > sent:
                await asyncio.to_thread(producer.publish_many, triggers[sent:due])
                sent = due
            elif sent == len(triggers) and crashes == 0:
                # the plan is sent and orch1 has not crashed yet (slow start): keep inputs
                # coming so that it reaches its crash; these executions are checked too
                more = TriggerReceived(workflow_id="chaos", workflow_version=1,
                                       source="manual", input={"extra": extra})
                await asyncio.to_thread(producer.publish_many, [more])
                ids.append(more.execution_id)
                extra += 1
            for p in procs:  # restart the dead (killed, or crashed by the injected fault)
                if not p.alive():
                    assert p.popen is not None
                    if p.popen.returncode == 17:
                        crashes += 1
                    p.start()
            if loop.time() >= next_kill and elapsed < CHAOS_SECONDS:
                # orch1 is spared until its first injected crash: its lives must be long
                # enough to reach the crash, whatever the start time
                victim = rng.choice(procs if crashes else procs[1:])
                if not victim.alive() and victim.popen is not None \
                        and victim.popen.returncode == 17:
                    crashes += 1  # crashed by the injected fault since the last check
                victim.kill9()
                kills[victim.name] += 1
                await asyncio.sleep(rng.uniform(0.2, 1.5))
                victim.start()
                next_kill = loop.time() + rng.uniform(2, 5)
            await asyncio.sleep(0.2)
        producer.close()
        # calm: no more injected crashes; wait until every execution has ended
        procs[0].kill9()
        procs[0].env = base
        procs[0].start()
        deadline = loop.time() + 180
        while True:
            for p in procs:
                if not p.alive():
                    p.start()
            events = await _read_all(s)
            ended = _terminal_count(events)
            if len(ended) >= len(ids) or loop.time() > deadline:
                break
            await asyncio.sleep(3)
    finally:
        for p in procs:
            p.stop()

    # --- the checks ---------------------------------------------------------------------------
    by_exec: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for e in events:
        by_exec[e["execution_id"]][e["seq"]].append(e)
    missing = [i for i in ids if i not in ended]
    assert not missing, f"{len(missing)} executions never ended, e.g. {missing[:3]}"
    assert set(ended) == set(ids)
    assert all(n == 1 for n in ended.values()), {k: n for k, n in ended.items() if n != 1}
    rewritten = conflicting = 0
    outcomes: Counter[str] = Counter()
    for execution_id, seqs in by_exec.items():
        assert sorted(seqs) == list(range(1, len(seqs) + 1)), f"gap in {execution_id}"
        for copies in seqs.values():
            if len(copies) > 1:
                rewritten += len(copies) - 1
                if any(c != copies[0] for c in copies[1:]):
                    conflicting += 1
        last = seqs[max(seqs)][0]
        outcomes[last["event_type"]] += 1
    assert conflicting == 0, f"{conflicting} (execution, seq) written twice with different events"
    assert outcomes == Counter({"ExecutionSucceeded": len(ids)}), outcomes

    assert crashes >= 1, (f"the crash between write and commit was never injected "
                          f"(orch1 started {procs[0].starts} times, {extra} extra triggers); "
                          f"see the orch1.*.log files under {logs}")
    assert sum(kills.values()) >= 3
    lines = [line.split() for line in runs.read_text().splitlines() if line.strip()]
    assert all(task == key for task, key in lines), "a run without its task key as idem. key"
    run_counts = Counter(task for task, _ in lines)
    scheduled = {(e["execution_id"], e["task_key"]) for e in events
                 if e["event_type"] == "NodeScheduled"}
    assert {t for t in run_counts} <= {k for _, k in scheduled}
    assert len(run_counts) == len(scheduled), "a scheduled task never ran"
    twice = sum(1 for n in run_counts.values() if n > 1)
    print(f"\nfault test: {len(ids)} executions, {len(events)} events, kills {dict(kills)}, "
          f"injected crashes after write {crashes}, extra triggers {extra}, restarts "
          f"{ {p.name: p.starts - 1 for p in procs} }, re-written identical events {rewritten}, "
          f"tasks {len(scheduled)}, runs {len(lines)}, tasks run more than once {twice} "
          f"(same idempotency key)")
