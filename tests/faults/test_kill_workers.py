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

EXECUTIONS = int(os.environ.get("FLOWLOG_FAULT_EXECUTIONS", "500"))
CHAOS_SECONDS = float(os.environ.get("FLOWLOG_FAULT_CHAOS_S", "45"))
CRASH_AT_COMMIT = 5  # the crashing orchestrator exits at its 5th commit after writes
CRASH_WAIT_S = 180.0  # beyond the chaos: how long more triggers go in for the first crash


async def test_kill_9_and_crash_after_write(settings: Settings, kafka_bootstrap: str,
                                            tmp_path: Path) -> None:
    s = settings.model_copy(update={"default_partitions": 6,
                                    "tool_modules": ["tests.e2e.e2e_tools"]})
    await asyncio.to_thread(ensure_topics, s)
    definition = tmp_path / "chaos.yaml"
    definition.write_text(DEFINITION)
    await asyncio.to_thread(apply_definition, s, definition)
    runs = tmp_path / "runs.log"
    base = worker_env(s, runs)
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
            events = await read_all(s)
            ended = terminal_count(events)
            if len(ended) >= len(ids) or loop.time() > deadline:
                break
            await asyncio.sleep(3)
    finally:
        for p in procs:
            p.stop()

    # --- the checks ---------------------------------------------------------------------------
    found = check_histories(events, ids, ended)

    assert crashes >= 1, (f"the crash between write and commit was never injected "
                          f"(orch1 started {procs[0].starts} times, {extra} extra triggers); "
                          f"see the orch1.*.log files under {logs}")
    assert sum(kills.values()) >= 3
    tasks = check_task_runs(runs, events)
    print(f"\nfault test: {len(ids)} executions, {len(events)} events, kills {dict(kills)}, "
          f"injected crashes after write {crashes}, extra triggers {extra}, restarts "
          f"{ {p.name: p.starts - 1 for p in procs} }, re-written identical events "
          f"{found.rewritten}, tasks {tasks.scheduled}, runs {tasks.runs}, tasks run more than "
          f"once {tasks.twice} (same idempotency key)")
