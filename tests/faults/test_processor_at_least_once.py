"""Fault test: the processor at least once (FLOWLOG_PROCESSING_GUARANTEE=at_least_once).

Two `processor` and two `executor` processes, ~200 executions in flight (a retried flaky
node: timers fire from the processors' state), `kill -9` of random processes, and two
injected crashes, each once:

* proc1 exits at its 3rd step issuing node tasks with that step's execution events
  acknowledged and its tasks never sent (FLOWLOG_FAULT_PROCESSOR_CRASH_BEFORE_TASKS). The
  re-read input then yields nothing (its decision is in the log): only the rebuild's
  re-issue of the tail's unanswered tasks lets those executions go on. Without it they
  never end and the test fails.
* proc2 exits at its 5th offset commit following acknowledged writes, before the commit
  (FLOWLOG_FAULT_CRASH_AFTER_WRITE, the committer's `before_commit`): its inputs are
  re-read, their decisions are duplicates `decide` drops.

A crashing process is spared from `kill -9` until it crashed; then it restarts without
the fault. If the planned triggers are all sent before both crashed, more follow (checked
like the others) until they did, within a deadline.

Checks (those of test_kill_workers.py), over the whole execution-events topic:
* every execution ends with exactly one terminal event, ExecutionSucceeded;
* its seqs are 1..n with no gaps; a (execution, seq) written twice is the same event;
* every scheduled task ran (none lost), each run with its task key as idempotency key;
* a rebuild issued tail tasks again (the log says so).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from pathlib import Path

import pytest
from flowlog.schemas.events import TriggerReceived
from flowlog.schemas.sdk import EventProducer
from flowlog.streams.runtime.kafka import ensure_topics
from flowlog.streams.runtime.tools import apply_definition

from flowlog.settings import Settings
from tests.support.faults import (
    DEFINITION,
    Proc,
    check_histories,
    check_task_runs,
    read_all,
    terminal_count,
    worker_env,
)

pytestmark = pytest.mark.faults

EXECUTIONS = int(os.environ.get("FLOWLOG_FAULT_EXECUTIONS", "200"))
CHAOS_SECONDS = float(os.environ.get("FLOWLOG_FAULT_CHAOS_S", "40"))
CRASH_WAIT_S = 180.0
FAULT_EXIT = 17


async def test_processor_at_least_once_survives_kill_9_and_crashes(
        settings: Settings, kafka_bootstrap: str, tmp_path: Path) -> None:
    s = settings.model_copy(update={"default_partitions": 6,
                                    "tool_modules": ["tests.e2e.e2e_tools"]})
    await asyncio.to_thread(ensure_topics, s)
    definition = tmp_path / "chaos.yaml"
    definition.write_text(DEFINITION)
    await asyncio.to_thread(apply_definition, s, definition)
    runs = tmp_path / "runs.log"
    # snapshots now and then: a rebuild reads snapshot + tail, the tail re-issues
    base = worker_env(s, runs, processing_guarantee="at_least_once",
                      processor_snapshot_interval_s=3)
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = [Proc("proc1", "processor",
                  {**base, "FLOWLOG_FAULT_PROCESSOR_CRASH_BEFORE_TASKS": "3"}, logs),
             Proc("proc2", "processor", {**base, "FLOWLOG_FAULT_CRASH_AFTER_WRITE": "5"}, logs),
             Proc("exec1", "executor", base, logs), Proc("exec2", "executor", base, logs)]
    crashy = {"proc1", "proc2"}
    crashed: Counter[str] = Counter()
    for p in procs:
        p.start()
    rng = random.Random(int(os.environ.get("FLOWLOG_FAULT_SEED", "7")))
    kills: Counter[str] = Counter()
    extra = 0

    def reap(p: Proc) -> None:
        """A process that exited by the injected fault: counted, restarted without it."""
        assert p.popen is not None
        if p.popen.returncode == FAULT_EXIT and p.name in crashy:
            crashed[p.name] += 1
            p.env = base
        p.start()

    try:
        triggers = [TriggerReceived(workflow_id="chaos", workflow_version=1, source="manual",
                                    input={"i": i}) for i in range(EXECUTIONS)]
        ids = [t.execution_id for t in triggers]
        producer = EventProducer.from_settings(s)
        loop = asyncio.get_running_loop()
        started = loop.time()
        next_kill = started + rng.uniform(3, 6)
        sent = 0
        crash_deadline = started + CHAOS_SECONDS + CRASH_WAIT_S
        while loop.time() - started < CHAOS_SECONDS or sent < len(triggers) \
                or (len(crashed) < 2 and loop.time() < crash_deadline):
            elapsed = loop.time() - started
            due = min(len(triggers), int(len(triggers) * elapsed / (CHAOS_SECONDS * 0.6)) + 1)
            if due > sent:
                await asyncio.to_thread(producer.publish_many, triggers[sent:due])
                sent = due
            elif sent == len(triggers) and len(crashed) < 2:
                # the plan is sent and a fault has not fired yet: keep inputs coming
                more = TriggerReceived(workflow_id="chaos", workflow_version=1,
                                       source="manual", input={"extra": extra})
                await asyncio.to_thread(producer.publish_many, [more])
                ids.append(more.execution_id)
                extra += 1
            for p in procs:
                if not p.alive():
                    reap(p)
            if loop.time() >= next_kill and elapsed < CHAOS_SECONDS:
                # a crashing process is spared until its fault fired (its life must reach it)
                victim = rng.choice([p for p in procs if p.name not in crashy or crashed[p.name]])
                if not victim.alive():
                    reap(victim)
                victim.kill9()
                kills[victim.name] += 1
                await asyncio.sleep(rng.uniform(0.2, 1.5))
                victim.start()
                next_kill = loop.time() + rng.uniform(3, 6)
            await asyncio.sleep(0.2)
        producer.close()
        # calm: no more faults; wait until every execution has ended
        for p in procs:
            if p.env is not base:
                p.kill9()
                p.env = base
                p.start()
        deadline = loop.time() + 180
        while True:
            for p in procs:
                if not p.alive():
                    reap(p)
            events = await read_all(s)
            ended = terminal_count(events)
            if len(ended) >= len(ids) or loop.time() > deadline:
                break
            await asyncio.sleep(3)
    finally:
        for p in procs:
            p.stop()

    # --- the checks ---------------------------------------------------------------------------
    found = check_histories(events, ids, ended, where=f"; logs under {logs}")

    assert crashed["proc1"] >= 1, f"the crash before the tasks never fired; see {logs}"
    assert crashed["proc2"] >= 1, f"the crash before the commit never fired; see {logs}"
    assert sum(kills.values()) >= 3
    reissued = sum(f.read_text(errors="replace").count("tasks of the tail issued again")
                   for f in logs.glob("proc*.log"))
    assert reissued >= 1, "no rebuild issued the tail's tasks again"
    tasks = check_task_runs(runs, events)
    print(f"\nprocessor at_least_once fault test: {len(ids)} executions, {len(events)} events, "
          f"kills {dict(kills)}, injected crashes {dict(crashed)}, extra triggers {extra}, "
          f"restarts { {p.name: p.starts - 1 for p in procs} }, re-written identical events "
          f"{found.rewritten}, rebuild logs issuing tail tasks {reissued}, tasks "
          f"{tasks.scheduled}, runs {tasks.runs}, tasks run more than once {tasks.twice} "
          f"(same idempotency key)")
