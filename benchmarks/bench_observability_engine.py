"""The engine benchmark with observability on and off: what metrics and tracing cost.

    python benchmarks/bench_observability_engine.py [--rate 300] [--rounds 3] [--search]

Modes (environment of the worker processes; everything else as bench_engine.py):

* ``off``: FLOWLOG_METRICS_ENABLED=false, FLOWLOG_TRACE_ENABLED=false (no endpoint, no
  counting, no trace ids; the per-record log context remains)
* ``metrics``: metrics on, tracing off
* ``metrics+ids``: the default: metrics on, trace ids made and carried, nothing recorded
* ``trace 1 %`` / ``trace 100 %``: spans recorded and exported over OTLP/HTTP to a local
  sink (benchmarks/otlp_sink.py) at that sampling ratio

Per round, each mode runs one fixed-rate window (``--rate``); modes are interleaved and
the order reverses every round (A B C D, D C B A, A B C D, ...) so a load change on a
shared machine, or a drift, hits every mode alike. The figure is the engine roles' CPU
per execution (sum of orchestrator, timers and executor CPU over the window / executions
sent), median of the rounds, and its increase over ``off``. On a CPU-bound machine the
highest sustainable rate falls in the same proportion. ``--search`` also runs
bench_engine's quick rate search once per mode. The machine's 1-minute load average is
recorded before every window (other processes share the cores: say so beside the
figures). Writes benchmarks/results/observability-engine.json.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import median, write_results
from _engine_harness import Options, console, run_step, show_step
from bench_engine import QUICK_RATES, search

ROLES = ("orchestrator", "dispatcher", "executor")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def modes(sink: str) -> dict[str, dict[str, str]]:
    return {
        "off": {"FLOWLOG_METRICS_ENABLED": "false", "FLOWLOG_TRACE_ENABLED": "false"},
        "metrics": {"FLOWLOG_TRACE_ENABLED": "false"},
        "metrics+ids": {},
        "trace 1 %": {"FLOWLOG_OTLP_ENDPOINT": sink, "FLOWLOG_TRACE_SAMPLE_RATIO": "0.01"},
        "trace 100 %": {"FLOWLOG_OTLP_ENDPOINT": sink, "FLOWLOG_TRACE_SAMPLE_RATIO": "1.0"},
    }


def cpu_per_execution_ms(step: Any) -> float | None:
    """The engine roles' CPU per execution sent (the harness's figure, summed over the
    role processes `orchestrator-0`, `dispatcher-0`, `executor-0`, ...)."""
    per = step.summary()["cpu_ms_per_execution"]
    values = [v for k, v in per.items() if k.split("-")[0] in ROLES]
    return sum(values) if values else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--rate", type=float, default=300.0)
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--search", action="store_true")
    ap.add_argument("--modes", help="comma-separated subset of the modes")
    args = ap.parse_args()
    port = free_port()
    sink = subprocess.Popen([sys.executable, str(Path(__file__).parent / "otlp_sink.py"),
                             "--port", str(port)])
    all_modes = modes(f"http://127.0.0.1:{port}/v1/traces")
    chosen = {k: v for k, v in all_modes.items()
              if not args.modes or k in args.modes.split(",")}
    per_exec: dict[str, list[float]] = {m: [] for m in chosen}
    steps: dict[str, list[dict[str, Any]]] = {m: [] for m in chosen}
    best: dict[str, float] = {}
    loads: list[float] = []
    began = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        for r in range(args.rounds):
            order = list(chosen) if r % 2 == 0 else list(reversed(chosen))
            for mode in order:
                opts = Options(duration=args.duration, drain=10.0, env=chosen[mode])
                load = os.getloadavg()[0]
                loads.append(load)
                step = run_step(opts, args.rate,
                                label=f"round {r + 1} {mode} (load {load:.2f}): ")
                show_step(step)
                steps[mode].append({**step.summary(), "loadavg_1m_before": round(load, 2)})
                value = cpu_per_execution_ms(step)
                if value is not None:  # kept even if a busy machine could not sustain
                    per_exec[mode].append(value)  # the window (its verdict is in the steps)
        if args.search:
            for mode, env in chosen.items():
                console.print(f"[bold]rate search, {mode}[/]")
                _, best[mode] = search(Options(duration=8.0, drain=5.0, env=env),
                                       [float(x) for x in QUICK_RATES["engine"]], 0)
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    base = median(per_exec["off"]) if per_exec.get("off") else None
    figures: dict[str, Any] = {
        "rate_per_s": args.rate, "window_s": args.duration, "rounds": args.rounds,
        "order": "interleaved, reversed every round", "began": began,
        "ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg_1m_before_windows": {"min": min(loads, default=None),
                                      "median": median(loads) if loads else None,
                                      "max": max(loads, default=None)},
        "modes": {}}
    console.print(f"\nengine roles' CPU per execution at {args.rate:g}/s "
                  f"(median of {args.rounds} interleaved rounds):")
    for mode in chosen:
        values = per_exec[mode]
        med = median(values) if values else None
        over = (med / base - 1) * 100 if med is not None and base else None
        figures["modes"][mode] = {
            "env": chosen[mode], "cpu_ms_per_execution_median": med and round(med, 3),
            "cpu_ms_per_execution_runs": [round(v, 3) for v in values],
            "windows_sustainable": [st.get("sustainable") for st in steps[mode]],
            "increase_over_off_percent": over and round(over, 1),
            "max_sustainable_per_s": best.get(mode), "steps": steps[mode]}
        console.print(f"  {mode:<12} {'-' if med is None else f'{med:.3f}'} ms"
                      f"{'' if over is None else f'  ({over:+.1f} % over off)'}"
                      f"{'' if mode not in best else f'  max {best[mode]:g}/s'}"
                      f"   runs {', '.join(f'{v:.3f}' for v in values)}")
    if loads:
        console.print(f"1-min load average before the windows: min {min(loads):.2f}, "
                      f"median {median(loads):.2f}, max {max(loads):.2f} "
                      f"({os.cpu_count()} cores, shared)")
    console.print(f"written to {write_results('observability-engine', figures)}")


if __name__ == "__main__":
    main()
