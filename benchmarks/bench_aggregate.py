"""Benchmark the execution aggregate: decide+apply cost per event, replay cost, snapshot size.

    python benchmarks/bench_aggregate.py [--runs 7] [--executions 300]

Prints the figures and writes benchmarks/results/aggregate.json. The DAG is 20 `tool`
nodes in 4 layers of 5; each node needs one or two nodes of the layer before and has one
CEL input over an upstream output, so every result costs a CEL evaluation per ready node.
Results arrive in order, each succeeding on its first attempt.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flowlog.aggregates.definition import compile_definition, parse_definition
from flowlog.aggregates.definition.compiled import CompiledDefinition
from flowlog.aggregates.execution import ExecutionState, decide, evolve, fold
from flowlog.aggregates.execution import inputs as I
from flowlog.aggregates.execution.aggregate import WorkflowExecution
from flowlog.aggregates.execution.events import ExecutionEvent

T0 = datetime(2025, 1, 1, tzinfo=UTC)
OUT = Path(__file__).parent / "results" / "aggregate.json"


def layered_dag(layers: int, width: int) -> CompiledDefinition:
    nodes: dict[str, Any] = {}
    for layer in range(layers):
        for i in range(width):
            nid = f"L{layer}_{i}"
            node: dict[str, Any] = {"type": "tool", "tool": "noop"}
            if layer:
                needs = sorted({f"L{layer - 1}_{i}", f"L{layer - 1}_{(i + 1) % width}"})
                node["needs"] = needs
                node["input"] = {"x": f"nodes.{needs[0]}.output.v + 1"}
            else:
                node["input"] = {"x": "inputs.seed"}
            nodes[nid] = node
    raw = {"id": f"bench-{layers}x{width}", "inputs": {"seed": {"type": "integer", "default": 1}},
           "nodes": nodes}  # fmt: skip
    return compile_definition(parse_definition(raw))


def script(d: CompiledDefinition, execution_id: str) -> list[tuple[datetime, I.Input]]:
    """The inputs of one run, in order (found by running it once)."""
    state = ExecutionState()
    now = T0
    pending: list[I.Input] = [I.TriggerReceived(event_id=f"{execution_id}:t",
                                                execution_id=execution_id,
                                                workflow_id=d.workflow_id, workflow_version=1)]
    out: list[tuple[datetime, I.Input]] = []
    while pending:
        inp = pending.pop(0)
        now += timedelta(milliseconds=5)
        out.append((now, inp))
        for e in decide(state, inp, now, d):
            evolve(state, e)
            if e.event_type == "NodeScheduled":
                n: Any = e
                pending.append(I.NodeResultReported(
                    event_id=f"{execution_id}:{n.node_id}", node_id=n.node_id, attempt=1,
                    status="succeeded", output={"v": 1}, task_key=n.task_key))  # fmt: skip
    assert state.phase == "succeeded", state.phase
    return out


def run_pure(d: CompiledDefinition, scripts: list[list[tuple[datetime, I.Input]]]) -> tuple[
        float, int, list[list[ExecutionEvent]]]:  # fmt: skip
    events_total = 0
    histories = []
    start = time.perf_counter()
    for inputs in scripts:
        state = ExecutionState()
        history: list[ExecutionEvent] = []
        for at, inp in inputs:
            evs = decide(state, inp, at, d)
            for e in evs:
                evolve(state, e)
            history.extend(evs)
        events_total += len(history)
        histories.append(history)
    return time.perf_counter() - start, events_total, histories


def run_wrapper(d: CompiledDefinition, scripts: list[list[tuple[datetime, I.Input]]]) -> tuple[
        float, int]:  # fmt: skip
    events_total = 0
    start = time.perf_counter()
    for inputs in scripts:
        (at0, trig), rest = inputs[0], inputs[1:]
        assert isinstance(trig, I.TriggerReceived)
        agg = WorkflowExecution.start(trig, d, now=at0)
        for at, inp in rest:
            agg.handle(inp, d, now=at)
        events_total += len(agg.collect_events())
    return time.perf_counter() - start, events_total


def run_replay(histories: list[list[ExecutionEvent]]) -> tuple[float, int]:
    start = time.perf_counter()
    for history in histories:
        fold(history)
    return time.perf_counter() - start, sum(len(h) for h in histories)


def snapshot_size(layers: int, width: int) -> dict[str, int]:
    d = layered_dag(layers, width)
    inputs = script(d, "snap-exec-0001")
    state = ExecutionState()
    mid = None
    for k, (at, inp) in enumerate(inputs):
        for e in decide(state, inp, at, d):
            evolve(state, e)
        if k == len(inputs) // 2:
            mid = len(json.dumps(state.to_dict(), separators=(",", ":")))
    full = len(json.dumps(state.to_dict(), separators=(",", ":")))
    return {"nodes": layers * width, "events": state.seq, "bytes_mid_run": mid or 0,
            "bytes_finished": full}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--executions", type=int, default=300)
    args = parser.parse_args()
    d = layered_dag(4, 5)
    scripts = [script(d, f"exec-{i:06d}") for i in range(args.executions)]
    pure, wrapper, replay, per_input = [], [], [], []
    for _ in range(args.runs):
        secs, n_events, histories = run_pure(d, scripts)
        pure.append(secs / n_events * 1e6)
        per_input.append(secs / sum(len(s) for s in scripts) * 1e6)
        secs, n_wrapped = run_wrapper(d, scripts)
        assert n_wrapped == n_events
        wrapper.append(secs / n_wrapped * 1e6)
        secs, n = run_replay(histories)
        replay.append(secs / n * 1e6)
    events_per_execution = n_events // args.executions
    result = {
        "dag": "20 tool nodes, 4 layers x 5, one CEL input each",
        "executions_per_run": args.executions,
        "runs": args.runs,
        "events_per_execution": events_per_execution,
        "inputs_per_execution": len(scripts[0]),
        "us_per_event_decide_apply_pure": round(statistics.median(pure), 2),
        "us_per_event_decide_apply_eventsourcing": round(statistics.median(wrapper), 2),
        "us_per_event_replay_evolve_only": round(statistics.median(replay), 2),
        "us_per_input_decide_apply_pure": round(statistics.median(per_input), 2),
        "snapshot": snapshot_size(10, 10),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "goal_us_per_event": 50,
    }
    print(f"20-node DAG: {events_per_execution} events / {len(scripts[0])} inputs per execution")
    r = result
    print(f"  decide+apply (pure fold)      {r['us_per_event_decide_apply_pure']:7.2f} µs/event"
          f"  ({r['us_per_input_decide_apply_pure']:.2f} µs/input)")  # fmt: skip
    print(f"  decide+apply (eventsourcing)  "
          f"{result['us_per_event_decide_apply_eventsourcing']:7.2f} µs/event")  # fmt: skip
    print(f"  replay (evolve only)          {r['us_per_event_replay_evolve_only']:7.2f} µs/event")
    snap = result["snapshot"]
    print(f"snapshot, {snap['nodes']}-node execution: {snap['bytes_mid_run']} B mid-run, "
          f"{snap['bytes_finished']} B finished ({snap['events']} events)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
