"""Shared by the engine's kill -9 fault tests (tests/faults/): the worker processes, the
workflow they run, reading every event back, and the checks every such test makes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from flowlog.schemas.codec import Codec
from flowlog.streams.runtime.kafka import catalog
from flowlog.streams.runtime.tools import TERMINAL

from flowlog.settings import REPO_ROOT, Settings

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


def worker_env(settings: Settings, runs: Path, **extra: object) -> dict[str, str]:
    """The environment of a worker process (`Proc`) of a fault test: this process's, with
    ``settings``' topic prefix, partitions and tool modules, each tool run logged to
    ``runs``, the local rate limiter and a short session timeout (a killed member leaves its
    group within seconds). ``extra`` names more settings, ``processing_guarantee=...`` for
    ``FLOWLOG_PROCESSING_GUARANTEE``."""
    return {**os.environ, "FLOWLOG_TOPIC_PREFIX": settings.topic_prefix,
            "FLOWLOG_DEFAULT_PARTITIONS": str(settings.default_partitions),
            "FLOWLOG_TOOL_MODULES": json.dumps(settings.tool_modules),
            "FLOWLOG_TEST_RUN_LOG": str(runs), "FLOWLOG_EXECUTOR_RATE_LIMITER": "local",
            "FLOWLOG_CONSUMER_SESSION_TIMEOUT_MS": "6000", "PYTHONUNBUFFERED": "1",
            **{f"FLOWLOG_{name.upper()}": str(value) for name, value in extra.items()}}


class Proc:
    """One worker process (`flowlog worker ROLE`), restartable, its log per start."""

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


async def read_all(settings: Settings) -> list[dict[str, Any]]:
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


def terminal_count(events: list[dict[str, Any]]) -> dict[str, int]:
    ends: dict[str, set[int]] = defaultdict(set)
    for e in events:
        if e["event_type"] in TERMINAL:
            ends[e["execution_id"]].add(e["seq"])
    return {k: len(v) for k, v in ends.items()}



@dataclass
class Histories:
    """What the history checks found beside the assertions."""

    rewritten: int  # identical events written again (at-least-once re-deliveries)
    outcomes: Counter[str]


def check_histories(events: list[dict[str, Any]], ids: list[str], ended: dict[str, int],
                    where: str = "") -> Histories:
    """Nothing lost, nothing doubled: every execution ended exactly once, succeeded, with
    seqs 1..n without gaps and no (execution, seq) written twice with different events."""
    by_exec: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for e in events:
        by_exec[e["execution_id"]][e["seq"]].append(e)
    missing = [i for i in ids if i not in ended]
    assert not missing, f"{len(missing)} executions never ended, e.g. {missing[:3]}{where}"
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
        outcomes[seqs[max(seqs)][0]["event_type"]] += 1
    assert conflicting == 0, f"{conflicting} (execution, seq) written twice with different events"
    assert outcomes == Counter({"ExecutionSucceeded": len(ids)}), outcomes
    return Histories(rewritten, outcomes)


@dataclass
class TaskRuns:
    scheduled: int  # tasks the histories scheduled
    runs: int  # runs the tools recorded
    twice: int  # tasks run more than once (always with the same idempotency key)


def check_task_runs(runs_file: Path, events: list[dict[str, Any]]) -> TaskRuns:
    """Every scheduled task ran, and every run carried its task key as idempotency key."""
    lines = [line.split() for line in runs_file.read_text().splitlines() if line.strip()]
    assert all(task == key for task, key in lines), "a run without its task key as idem. key"
    run_counts = Counter(task for task, _ in lines)
    scheduled = {(e["execution_id"], e["task_key"]) for e in events
                 if e["event_type"] == "NodeScheduled"}
    assert set(run_counts) <= {k for _, k in scheduled}
    assert len(run_counts) == len(scheduled), "a scheduled task never ran (lost)"
    return TaskRuns(len(scheduled), len(lines), sum(1 for n in run_counts.values() if n > 1))
