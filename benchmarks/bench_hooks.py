"""Per-record cost of the observability hooks each engine role runs, at default settings.

    python benchmarks/bench_hooks.py [--n 200000] [--runs 5] [--label before|after]

For every role, the hook sequence its loop runs per input record (the same calls, in the
same order, as streams/runtime/{orchestrator,dispatcher,executor}.py at 100 executions/s,
where a consumer batch holds one record):

* orchestrator: records_in, enter (a trigger roots its trace), describe, decided,
  headers, leave, records_out
* dispatcher:   records_in, enter, headers, leave, records_out
* executor:     records_in, enter (with its node attributes), describe, task_done,
  headers, end_current, leave(end=False), records_out

Settings are the defaults (``Settings()``: metrics on, tracing on with no exporter, so
trace ids are made and carried and no span is recorded), installed the way
``start_process`` does. Records are aiokafka ``ConsumerRecord`` objects (key = the
execution id's bytes), six per execution (a 5-node DAG's trigger and five results), in
two variants: every record carries a ``traceparent`` header (what the roles write), or
none does (the execution's own trace is derived from its id). Decisions carry the 5-node
DAG's events (one terminal event per execution).

Prints µs per record (median of ``--runs`` interleaved runs over ``--n`` records, the
empty loop's cost included and shown apart). With ``--label``, appends this invocation's
runs under that label in benchmarks/results/hooks.json and recomputes the medians there,
so old and new code can be run alternately (``PYTHONPATH=<old checkout>`` for the old):

    for i in 1 2 3 4 5; do
      PYTHONPATH=/tmp/hooks-old python benchmarks/bench_hooks.py --runs 1 --label before
      python benchmarks/bench_hooks.py --runs 1 --label after
    done
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka.structs import ConsumerRecord

from flowlog.observability import hooks, logs, tracing
from flowlog.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results" / "hooks.json"

TRIGGERS = "flowlog.triggers"
RESULTS_TOPIC = "flowlog.node-results"
EVENTS_TOPIC = "flowlog.execution-events"
TASKS_TOPIC = "flowlog.node-tasks"
PER_EXECUTION = 6  # trigger + five node results (the orchestrator's inputs)


def _event(name: str) -> object:
    return type(name, (), {})()  # count_decision reads only the type's name


#: the events of each of an execution's six decisions (5-node chain, no-op tools)
DECISIONS = [
    [_event("ExecutionStarted"), _event("NodeScheduled")],
    *[[_event("NodeSucceeded"), _event("NodeScheduled")] for _ in range(4)],
    [_event("NodeSucceeded"), _event("ExecutionSucceeded")],
]


def make_records(n: int, with_traceparent: bool) -> list[ConsumerRecord[bytes, bytes]]:
    out: list[ConsumerRecord[bytes, bytes]] = []
    now_ms = int(time.time() * 1000)
    offset = 0
    while len(out) < n:
        eid = str(uuid.uuid4())
        tp = tracing.execution_traceparent(eid)
        for i in range(PER_EXECUTION):
            # a fresh bytes object per record, as the Kafka client hands over
            headers = ((tracing.TRACEPARENT, bytes(bytearray(tp))),) if with_traceparent else ()
            out.append(ConsumerRecord(
                topic=TRIGGERS if i == 0 else RESULTS_TOPIC, partition=0, offset=offset,
                timestamp=now_ms, timestamp_type=0, key=eid.encode(), value=b"",
                checksum=None, serialized_key_size=36, serialized_value_size=0,
                headers=headers))
            offset += 1
    return out[:n]


def orchestrator(msgs: list[Any]) -> None:
    for i, msg in enumerate(msgs):
        hooks.records_in("orchestrator", msg.topic, 1)
        scope = hooks.enter("orchestrator decide", msg, root=msg.topic == TRIGGERS)
        hooks.describe("wf-bench", "default", "NodeResultReported")
        hooks.decided(DECISIONS[i % PER_EXECUTION], "wf-bench", msg.timestamp)
        hooks.headers()
        hooks.leave(scope)
        hooks.records_out("orchestrator", EVENTS_TOPIC, 1)


def dispatcher(msgs: list[Any]) -> None:
    for msg in msgs:
        hooks.records_in("dispatcher", EVENTS_TOPIC, 1)
        scope = hooks.enter("dispatcher issue", msg)
        hooks.headers()
        hooks.leave(scope)
        hooks.records_out("dispatcher", TASKS_TOPIC, 1)


def executor(msgs: list[Any]) -> None:
    for msg in msgs:
        hooks.records_in("executor", TASKS_TOPIC, 1)
        scope = hooks.enter("executor task", msg, attributes={
            "flowlog.node_id": "n1", "flowlog.node_type": "tool"})
        hooks.describe("wf-bench", "default")
        # the task (started under the scope) runs, reports and ends the hop
        hooks.task_done("tool", "succeeded", 0.0004, None)
        hooks.headers()
        hooks.end_current()
        hooks.leave(scope, end=False)
        hooks.records_out("executor", RESULTS_TOPIC)


def empty(msgs: list[Any]) -> None:
    for msg in msgs:
        msg.topic  # noqa: B018 - the loop alone, for reference


SEQUENCES: dict[str, Callable[[list[Any]], None]] = {
    "orchestrator": orchestrator, "dispatcher": dispatcher, "executor": executor,
    "empty loop": empty,
}


def timed(fn: Callable[[list[Any]], None], msgs: list[Any]) -> float:
    started = time.perf_counter()
    fn(msgs)
    return (time.perf_counter() - started) / len(msgs) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="records per run")
    ap.add_argument("--runs", type=int, default=5, help="interleaved runs")
    ap.add_argument("--label", help="append the runs under this label in "
                    "benchmarks/results/hooks.json (e.g. before, after)")
    args = ap.parse_args()

    settings = Settings()
    tracing.configure_tracing(settings, "bench")  # as start_process does
    hooks.COUNTING = settings.metrics_enabled
    print(f"hooks: {hooks.__file__}")
    variants = {"traceparent": make_records(args.n, True),
                "no traceparent": make_records(args.n, False)}
    raw: dict[str, list[float]] = {}
    for _ in range(args.runs):
        for variant, msgs in variants.items():
            for role, fn in SEQUENCES.items():
                raw.setdefault(f"{role} / {variant}", []).append(timed(fn, msgs))
    assert logs.current_execution().hop is None, "a scope was left open"
    for name, values in raw.items():
        print(f"{name:<32} {statistics.median(values):7.2f} µs per record   runs: "
              + ", ".join(f"{v:.2f}" for v in values))
    if not args.label:
        return
    doc: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    runs = doc.setdefault("runs", {}).setdefault(args.label, {})
    for name, values in raw.items():
        runs.setdefault(name, []).extend(round(v, 3) for v in values)
    doc.update({
        "benchmark": "bench_hooks", "when": datetime.now(UTC).isoformat(),
        "unit": "µs per input record (the hook sequence of each role, default settings)",
        "command": "python benchmarks/bench_hooks.py --n N --runs 1 --label L, old and new "
                   "code alternately (see the script's docstring)",
        "n": args.n,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average": os.getloadavg()},
        "figures": {label: {name: round(statistics.median(v), 2) for name, v in r.items()}
                    for label, r in doc["runs"].items()},
    })
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
