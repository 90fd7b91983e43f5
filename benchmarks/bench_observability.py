"""Per-record cost of the observability calls the engine's roles make, on one core.

    python benchmarks/bench_observability.py [--n 200000] [--runs 5]

What one input record costs a role beyond its own work: ``hooks.enter`` + ``describe`` +
``headers`` + ``leave`` (trace hop and log context) and the metric calls (a counter per
record, a histogram observation per decision), in microseconds, for: metrics only
(tracing off), tracing with no exporter (the default: ids made and carried, nothing
recorded), and tracing recorded at 1 % and 100 % (an in-memory exporter standing in for
OTLP, so the export's network cost is not in the figure). Each execution is a trigger (no
headers: the execution's own trace) and 15 follow-ups carrying its headers (the 5-node
DAG's records through the three roles). Prints the figures; writes
benchmarks/results/bench_observability.json (medians of interleaved runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowlog.observability import hooks, metrics, tracing
from flowlog.settings import Settings

RESULTS = Path(__file__).parent / "results"


class Msg:
    __slots__ = ("headers", "key", "timestamp", "topic")

    def __init__(self, key: bytes, headers: Any, topic: str) -> None:
        self.key = key
        self.headers = headers
        self.topic = topic
        self.timestamp = int(time.time() * 1000)


#: Records per execution of the engine benchmark's 5-node DAG through all three roles
#: (orchestrator: trigger + 5 results; dispatcher: ~6 batches; executor: 5 tasks).
PER_EXECUTION = 16


def records(n: int) -> list[Msg]:
    out = []
    for _ in range(n // PER_EXECUTION):
        key = str(uuid.uuid4()).encode()
        out.append(Msg(key, (), "flowlog.triggers"))
        out += [Msg(key, None, "flowlog.node-results")  # headers filled on the run
                for _ in range(PER_EXECUTION - 1)]
    return out


def one_pass(msgs: list[Msg], with_trace: bool) -> float:
    events_in = metrics.EVENTS_IN.labels("orchestrator", "flowlog.node-results")
    decision = metrics.DECISION_LATENCY.labels("orchestrator")
    started = time.perf_counter()
    last: list[tuple[str, bytes]] | None = None
    for msg in msgs:
        if msg.headers is None:
            msg.headers = last or ()
        events_in.inc()
        if with_trace:
            scope = hooks.enter("orchestrator decide", msg, root=not msg.headers)
            hooks.describe("wf", "default")
            last = hooks.headers()
            hooks.leave(scope)
        decision.observe(time.time() - msg.timestamp / 1000)
    return (time.perf_counter() - started) / len(msgs) * 1e6


def run(mode: str, n: int) -> float:
    base = Settings()
    if mode == "metrics only (tracing off)":
        tracing.configure_tracing(base.model_copy(update={"trace_enabled": False}), "bench")
        exporter = None
    elif mode == "tracing, no exporter (default)":
        tracing.configure_tracing(base, "bench")
        exporter = None
    else:
        ratio = 0.01 if "1 %" in mode else 1.0
        exporter = tracing.use_memory_exporter(
            base.model_copy(update={"trace_sample_ratio": ratio}), "bench")
    msgs = records(n)
    per_record = one_pass(msgs, with_trace=mode != "metrics only (tracing off)")
    if exporter is not None:
        exporter.clear()
    tracing.shutdown_tracing()
    return per_record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    modes = ["metrics only (tracing off)", "tracing, no exporter (default)",
             "tracing recorded at 1 %", "tracing recorded at 100 %"]
    raw: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.runs):  # interleaved, so load changes hit every mode alike
        for m in modes:
            raw[m].append(run(m, args.n))
    result = {m: round(statistics.median(v), 3) for m, v in raw.items()}
    for m in modes:
        print(f"{m:<34} {result[m]:>8.2f} µs per record  (runs: "
              f"{', '.join(f'{x:.2f}' for x in raw[m])})")
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "bench_observability.json").write_text(json.dumps({
            "benchmark": "bench_observability", "when": datetime.now(UTC).isoformat(),
            "command": f"python benchmarks/bench_observability.py --n {args.n} "
                       f"--runs {args.runs}",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "note": "2 cores shared with other engineers' test runs"},
            "us_per_record_median": result, "runs": raw}, indent=1))


if __name__ == "__main__":
    main()
