"""The orchestrator's per-decision CPU hot spots (docs/benchmarks.md, rows 6 and 7), before
and after: `ExecutionEventBatch` encode and decode, and the deterministic ids.

    python benchmarks/bench_batch.py [--n 20000] [--runs 5]

"before" is what the codec did until the compiled path: fastavro's `schemaless_writer` /
`schemaless_reader` over the whole batch schema (the codec with `compiled=False` runs
exactly that), and `str(uuid.uuid5(...))` for ids. "after" is `Codec()` and
`schemas.ids`. Batches:

* decision: 3 events as the orchestrator writes them (`wire.batch_record` of domain
  events; one decision, so one `occurred_at` shared by its events);
* bench_codec: the 4-event batch of bench_codec.py (pydantic models, a timestamp each).

Each case cycles through 101 batches with different timestamps (a decision's `now` is
new every time; the compiled path keeps only the last timestamp it saw).

Each figure is µs per call, the median of `--runs` runs of `--n` calls, runs of the
before and after cases interleaved (the machine is shared). Prints them and writes
benchmarks/results/bench_batch.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import cycle
from typing import Any

from _common import write_results
from bench_codec import batch as bench_codec_batch
from flowlog.aggregates import records as wire
from flowlog.aggregates.execution import events as dev
from flowlog.schemas.codec import Codec
from flowlog.schemas.ids import NAMESPACE_FLOWLOG, execution_event_id

EXECUTION = "0192f8a4-7c1e-7d3a-9b2f-5e4d3c2b1a00"


def decision_batch(now: datetime | None = None) -> dict[str, Any]:
    """A node result's decision: the node succeeded, the next two are scheduled."""
    now = now or datetime.now(UTC)
    env: dict[str, Any] = {
        "occurred_at": now, "execution_id": EXECUTION, "workflow_id": "invoice-triage",
        "workflow_version": 3, "correlation_id": "0192f8a4-7c1e-7d3a-9b2f-5e4d3c2b1a01",
        "causation_id": execution_event_id(EXECUTION, 6), "tenant": "default",
    }
    events: list[dev.ExecutionEvent] = [
        dev.NodeSucceeded(event_id=execution_event_id(EXECUTION, 7), seq=7, node_id="classify",
                          attempt=1, output={"label": "urgent", "confidence": 0.93}, **env),
        dev.NodeScheduled(event_id=execution_event_id(EXECUTION, 8), seq=8, node_id="route",
                          node_type="condition", attempt=1, input={"label": "urgent"},
                          task_key=f"{EXECUTION}:route:1", **env),
        dev.NodeScheduled(event_id=execution_event_id(EXECUTION, 9), seq=9, node_id="notify",
                          node_type="tool", attempt=1, input={"channel": "#ops"},
                          task_key=f"{EXECUTION}:notify:1", **env),
    ]
    return wire.batch_record(events, "0192f8a4-7c1e-7d3a-9b2f-5e4d3c2b1a02")


def per_call_us(fn: Callable[[], Any], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def measure(cases: dict[str, tuple[Callable[[], Any], Callable[[], Any]]], n: int, runs: int
            ) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for name, (before, after) in cases.items():
        before(), after()
        b_runs, a_runs = [], []
        for _ in range(runs):  # interleaved: both see the same neighbours
            b_runs.append(per_call_us(before, n))
            a_runs.append(per_call_us(after, n))
        b, a = statistics.median(b_runs), statistics.median(a_runs)
        figures[name] = {
            "before_us": round(b, 2), "after_us": round(a, 2), "speedup": round(b / a, 2),
            "before_runs": [round(x, 2) for x in b_runs],
            "after_runs": [round(x, 2) for x in a_runs], "n": n,
        }
        print(f"{name:34s} before {b:7.2f} µs   after {a:6.2f} µs   x{b / a:4.1f}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    old, new = Codec(compiled=False), Codec()
    name = "ExecutionEventBatch"
    start = datetime.now(UTC)
    decisions = [decision_batch(start + timedelta(milliseconds=7 * i)) for i in range(101)]
    codec_batches = [bench_codec_batch().to_avro() for _ in range(101)]
    sizes = {}
    cases: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {}
    for label, records in (("decision (3 events)", decisions),
                           ("bench_codec (4 events)", codec_batches)):
        datas = [old.encode(name, r) for r in records]
        for record, data in zip(records, datas, strict=True):
            if new.encode(name, record) != data or new.decode(data) != old.decode(data):
                raise SystemExit(f"{label}: the compiled path differs from fastavro")
        sizes[label] = len(datas[0])
        rs, ds = cycle(records), cycle(datas)
        cases[f"encode {label}"] = (lambda rs=rs: old.encode(name, next(rs)),
                                   lambda rs=rs: new.encode(name, next(rs)))
        cases[f"decode {label}"] = (lambda ds=ds: old.decode(next(ds)),
                                   lambda ds=ds: new.decode(next(ds)))
    key = f"{EXECUTION}:17"
    cases["execution_event_id"] = (
        lambda: str(uuid.uuid5(NAMESPACE_FLOWLOG, f"{EXECUTION}:{17}")),
        lambda: execution_event_id(EXECUTION, 17),
    )
    cases["wire.derived_id"] = (
        lambda: str(uuid.uuid5(NAMESPACE_FLOWLOG, ":".join((key, "result")))),
        lambda: wire.derived_id(key, "result"),
    )
    figures = measure(cases, args.n, args.runs)
    figures["encoded_bytes"] = sizes
    figures["runs"] = args.runs
    figures["cores"] = 1
    path = write_results("bench_batch", figures)
    print(f"encoded sizes: {sizes}; wrote {path}")


if __name__ == "__main__":
    main()
