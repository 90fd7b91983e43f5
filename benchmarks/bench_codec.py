"""Codec throughput on one core: encodes and decodes per second of a typical execution
event (NodeSucceeded with a small JSON output), plus a batch of 4 events.

    python benchmarks/bench_codec.py [--n 200000] [--runs 5]

Prints the figures and writes benchmarks/results/bench_codec.json (medians of the runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowlog.schemas.codec import Codec
from flowlog.schemas.events import ExecutionEventBatch, NodeScheduled, NodeStarted, NodeSucceeded
from flowlog.schemas.ids import execution_event_id

RESULTS = Path(__file__).parent / "results"


def typical() -> NodeSucceeded:
    ex = "0192f8a4-7c1e-7d3a-9b2f-5e4d3c2b1a00"
    return NodeSucceeded(
        event_id=execution_event_id(ex, 7), occurred_at=datetime.now(UTC), execution_id=ex,
        workflow_id="invoice-triage", workflow_version=3, seq=7,
        correlation_id="0192f8a4-7c1e-7d3a-9b2f-5e4d3c2b1a01",
        causation_id=execution_event_id(ex, 6), node_id="classify", attempt=1,
        output={"label": "urgent", "confidence": 0.93, "reasons": ["amount", "vendor"]},
    )


def batch() -> ExecutionEventBatch:
    ex = "0192f8a4-7c1e-7d3a-9b2f-5e4d3c2b1a00"
    env = {"execution_id": ex, "workflow_id": "invoice-triage", "workflow_version": 3}
    events = [
        typical(),
        NodeScheduled(event_id=execution_event_id(ex, 8), seq=8, node_id="route",
                      node_type="condition", attempt=1, input={"label": "urgent"},
                      task_key=f"{ex}:route:1", **env),
        NodeStarted(event_id=execution_event_id(ex, 9), seq=9, node_id="route", attempt=1, **env),
        NodeSucceeded(event_id=execution_event_id(ex, 10), seq=10, node_id="route", attempt=1,
                      output={"branch": "escalate"}, **env),
    ]
    return ExecutionEventBatch(execution_id=ex, first_seq=7, last_seq=10, events=events)


def rate(fn: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    codec = Codec()
    event = typical()
    record = event.to_avro()
    data = codec.encode("NodeSucceeded", record)
    b = batch()
    b_record = b.to_avro()
    b_data = codec.encode("ExecutionEventBatch", b_record)
    cases = {
        "encode (dict -> bytes)": lambda: codec.encode("NodeSucceeded", record),
        "decode (bytes -> dict)": lambda: codec.decode(data),
        "encode typed (model -> bytes)": lambda: codec.encode_event(event),
        "decode + validate (bytes -> model)": lambda: codec.decode_event(data),
        "encode batch of 4": lambda: codec.encode("ExecutionEventBatch", b_record),
        "decode batch of 4": lambda: codec.decode(b_data),
    }
    figures: dict[str, Any] = {}
    for name, fn in cases.items():
        n = args.n if "validate" not in name and "typed" not in name else args.n // 4
        n = n if "batch" not in name else args.n // 4
        fn()
        runs = [rate(fn, n) for _ in range(args.runs)]
        figures[name] = {"per_second_median": round(statistics.median(runs)),
                         "runs": [round(r) for r in runs], "n": n}
        print(f"{name:38s} {statistics.median(runs):>12,.0f} /s   (runs: "
              + ", ".join(f"{r:,.0f}" for r in runs) + ")")
    out = {
        "benchmark": "bench_codec",
        "event": "NodeSucceeded (typical execution event)",
        "encoded_bytes": len(data),
        "batch_encoded_bytes": len(b_data),
        "cores": 1,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "figures": figures,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(f"typical event: {len(data)} bytes; batch of 4: {len(b_data)} bytes")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_codec.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
