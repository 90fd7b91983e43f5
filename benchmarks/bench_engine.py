"""The engine benchmark (issue 5): executions per second through the real engine on the
5-node DAG A → (B, C) → D → E (examples/bench-5node.yaml, every node the no-op tool run by
an executor), and trigger-to-completion latency at half the highest sustainable rate.

    python benchmarks/bench_engine.py                  # the full run (about 8 minutes)
    python benchmarks/bench_engine.py --quick          # about 2 minutes
    python benchmarks/bench_engine.py --rates 100,200 --duration 10 --latency-runs 1
    python benchmarks/bench_engine.py --profile        # + py-spy per role at the max rate
    python benchmarks/bench_engine.py --target raw     # the raw aiokafka ping-pong instead
    python benchmarks/bench_engine.py --target faust   # the same ping-pong as Faust agents
    python benchmarks/bench_engine.py --classic        # the classic layout: orchestrator +
                                                       # dispatcher + executor

Needs the local broker (`make up`). Method (docs/benchmarks.md):

* Every step runs on fresh topics (prefix `bench.<random>.`) and fresh consumer groups: it
  applies the topic catalog and the definition, starts the worker processes (the default
  layout: one processor, one executor; --classic: one orchestrator, one dispatcher, one
  executor), waits until every group is stable with all
  partitions assigned, runs a warm-up (executions on every partition, all finished), then
  the fixed-rate starter for --duration seconds, then lets it drain, then stops the
  workers and deletes the topics and groups.
* The starter sends TriggerReceived through the SDK at a fixed schedule (i/rate), each
  with its send time in the input; a consumer of execution-events records each
  execution's terminal event. Latency = the terminal event's `occurred_at` (stamped by the
  deciding role) − the trigger's send time (same clock: one machine).
* Sustainable: the starter kept its schedule (≥ 98 % sent); the backlog (sent − finished,
  sampled every 0.25 s) is flat: its least-squares slope over the last three quarters of
  the window is below 2 % of the rate, or not above twice its standard error (noise);
  every execution finished within --drain seconds after the starter stopped; none failed.
* Rates step up (--rates) until one is not sustainable, then --refine bisection steps
  between the last sustainable and the first not. Latency: --latency-runs runs at half the
  highest sustainable rate; the figures are the medians of the runs' p50/p99/max.

Prints tables; writes benchmarks/results/engine.json (engine-raw-pingpong.json and
engine-faust-pingpong.json for the other targets, engine-profile.json for --profile).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _common import median, write_results
from _engine_harness import (
    Layout,
    Options,
    Step,
    console,
    make_target,
    run_step,
    show_step,
)
from rich.table import Table

from flowlog.settings import REPO_ROOT, Settings

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
DEFAULT_RATES = {"engine": [100, 200, 300, 400, 500, 600, 700, 800, 1000, 1250, 1500, 2000],
                 "raw": [1000, 2000, 3000, 4000, 5000, 6000, 8000],
                 "faust": [100, 200, 300, 400, 500, 600, 800, 1000]}
QUICK_RATES = {"engine": [100, 200, 400, 600, 800, 1000, 1500],
               "raw": [1000, 2000, 4000, 6000, 8000],
               "faust": [100, 200, 400, 600, 800, 1000]}
RECORDS_PER_EXECUTION = 17  # see docs/benchmarks.md


# --- the profile ----------------------------------------------------------------------------

# the first frame from the leaf up that matches decides (py-spy frame text: "func (file:line)")
IDLE = ("EpollSelector.select", "selectors.py")
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("validation (pydantic)", ("pydantic", "to_model (", "from_avro (", "validate_dict (")),
    ("decode (Avro)", ("Codec.decode (", "Codec._decode (", "DecodeGuard.decode (", "fastavro")),
    ("encode (Avro)", ("Codec.encode (",)),
    ("ids (uuid5/uuid7)", ("uuid.py", "schemas/ids.py", "derived_id (")),
    ("wire mapping (dict ⇄ domain)", ("aggregates/records.py",)),
    ("domain (decide / evolve)", ("aggregates/",)),
    ("definitions / task config", ("runtime/registry.py",)),
    ("tool runner (executors/)", ("streams/executors/",)),
    ("Kafka client (aiokafka)", ("aiokafka/", "kafka/")),
    ("logging", ("logging/",)),
    ("observability (metrics, tracing, log context)",
     ("flowlog/observability/", "opentelemetry/", "prometheus_client/", "structlog/")),
    ("role code (own frames)", ("streams/runtime/", "bench_raw_pingpong")),
]
FALLBACK = "asyncio event loop / other"


def categorize(stack: list[str]) -> str:
    for frame in reversed(stack):
        for name, needles in CATEGORIES:
            if any(n in frame for n in needles):
                return name
    return FALLBACK


def summarize_profile(path: Path, duration: float) -> dict[str, Any]:
    """Shares of the busy samples of one process (py-spy raw output, 100 Hz)."""
    counts: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    busy = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack_text, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = [f for f in stack_text.split(";") if "(" in f]  # root first
        c = int(n)
        if frames and any(i in frames[-1] for i in IDLE):
            idle += c  # waiting in epoll: not CPU
            continue
        busy += c
        counts[categorize(frames)] += c
        if frames:
            leaves[frames[-1]] += c
    return {
        "busy_samples": busy, "idle_samples": idle,
        "busy_percent_of_core": round(busy / (100 * duration) * 100, 1),
        "share_percent": {k: round(v / busy * 100, 1) for k, v in counts.most_common()}
        if busy else {},
        "top_leaves": [(k, round(v / busy * 100, 1)) for k, v in leaves.most_common(12)]
        if busy else [],
    }


# --- the whole run --------------------------------------------------------------------------

def search(opts: Options, rates: list[float], refine: int) -> tuple[list[Step], float]:
    steps: list[Step] = []
    best, fail = 0.0, None
    for rate in rates:
        step = run_step(opts, rate)
        show_step(step)
        steps.append(step)
        if step.sustainable:
            best = rate
        else:
            fail = rate
            break
    for _ in range(refine):
        if fail is None or fail - best <= 25:
            break
        mid = round((best + fail) / 2 / 25) * 25 or (best + fail) / 2
        if mid in (best, fail):
            break
        step = run_step(opts, mid, label="refine: ")
        show_step(step)
        steps.append(step)
        if step.sustainable:
            best = mid
        else:
            fail = mid
    return steps, best


def code_state() -> dict[str, Any]:
    """The commit measured, and the engine files that differ from it (the working tree is
    what the workers import)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True,
                                  text=True, timeout=10).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""
    dirty = git("status", "--porcelain", "--", "streams", "schemas", "aggregates", "flowlog")
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted_engine_files": [line[3:] for line in dirty.splitlines()]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", choices=["engine", "raw", "faust"], default="engine",
                    help="the engine, or the 5-node ping-pong on raw aiokafka or as Faust "
                    "agents (bench_raw_pingpong.py, bench_faust_pingpong.py)")
    ap.add_argument("--quick", action="store_true",
                    help="shorter: 8 s windows, coarser rates, no refine, 1 latency run")
    ap.add_argument("--rates", help="comma-separated rates to step through (executions/s)")
    ap.add_argument("--duration", type=float, help="seconds per window (default 20; quick 8)")
    ap.add_argument("--drain", type=float, help="seconds allowed to finish after the window")
    ap.add_argument("--refine", type=int, help="bisection steps after the first failure")
    ap.add_argument("--latency-runs", type=int, help="runs at half the max rate (default 3)")
    ap.add_argument("--latency-rate", type=float, help="skip the search: latency at this rate")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--orchestrators", type=int, default=1)
    ap.add_argument("--dispatchers", "--timers", dest="timers", type=int, default=1,
                    help="dispatcher processes (the role was called `timers` before)")
    ap.add_argument("--executors", type=int, default=1)
    ap.add_argument("--processors", type=int, default=None, metavar="N",
                    help="N `processor` processes (the default layout; default 1)")
    ap.add_argument("--classic", action="store_true",
                    help="the classic layout: --orchestrators and --dispatchers instead of "
                    "processors (writes engine-classic.json)")
    ap.add_argument("--all-in-one", type=int, default=0, metavar="N",
                    help="N processes with every role instead of one process per role")
    ap.add_argument("--profile", action="store_true",
                    help="py-spy record every worker for one window at the max rate")
    ap.add_argument("--profile-rate", type=float, help="profile at this rate (skips nothing)")
    ap.add_argument("--worker-script", metavar="FILE",
                    help="run this Python file instead of `-m flowlog.cli` for the workers "
                    "(same arguments): for trying a patched engine; implies --no-write")
    ap.add_argument("--client", choices=("aiokafka", "confluent"),
                    help="Kafka client of the workers' orchestrator, timers and executor "
                    "roles (FLOWLOG_KAFKA_CLIENT, default aiokafka); given, the json's name "
                    "says it (engine-confluent*.json, engine-aiokafka*.json)")
    ap.add_argument("--no-write", action="store_true", help="print only, write no json")
    ap.add_argument("--env", action="append", default=[], metavar="K=V",
                    help="extra environment for the workers (e.g. FLOWLOG_PRODUCER_LINGER_MS=5)")
    args = ap.parse_args(argv)

    quick = args.quick
    # the engine's default layout is processor + executor; the ping-pong targets and
    # --classic run the three-role shape
    processors = (args.processors if args.processors is not None
                  else 0 if args.classic or args.target != "engine" else 1)
    if args.classic and processors:
        ap.error("--classic runs orchestrators and dispatchers: drop --processors")
    opts = Options(
        target=args.target, partitions=args.partitions,
        layout=Layout(args.orchestrators, args.timers, args.executors, args.all_in_one,
                      processors),
        duration=args.duration or (8.0 if quick else 20.0),
        drain=args.drain or (5.0 if quick else 10.0),
        env={"FLOWLOG_KAFKA_CLIENT": args.client or "aiokafka",
             **dict(kv.split("=", 1) for kv in args.env)},
        worker_script=args.worker_script)
    if args.worker_script or args.env:
        args.no_write = True  # an experiment, not the engine's figure
    rates = ([float(r) for r in args.rates.split(",")] if args.rates
             else [float(r) for r in (QUICK_RATES if quick else DEFAULT_RATES)[args.target]])
    refine = args.refine if args.refine is not None else (0 if quick else 1)
    latency_runs = args.latency_runs if args.latency_runs is not None else (1 if quick else 3)
    target = make_target(args.target, args.partitions)
    load = os.getloadavg()
    client = args.client or "aiokafka"
    console.print(f"[bold]{target.description}[/] ({client}): {opts.layout.label()}, "
                  f"{opts.partitions} partitions, {os.cpu_count()} CPUs, load before "
                  f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    t_begin = time.monotonic()
    busy = [line for line in subprocess.run(["ps", "-eo", "args"], capture_output=True,
                                            text=True).stdout.splitlines()
            if "pytest" in line]
    if busy:
        console.print(f"[yellow]note: {len(busy)} pytest process(es) running beside the "
                      "benchmark: figures will be low[/]")
    partitions_before = broker_partitions()
    if partitions_before > 1000:
        console.print(f"[yellow]note: the broker holds {partitions_before} partitions "
                      "(old test or bench topics?): it is slower with thousands; figures "
                      "will be low. Delete them, or `make clean && make up`.[/]")

    steps: list[Step] = []
    if args.latency_rate:
        best = args.latency_rate * 2
    else:
        steps, best = search(opts, rates, refine)
    lat_steps: list[Step] = []
    half = best / 2
    if half > 0:
        for i in range(latency_runs):
            step = run_step(opts, half, label=f"latency {i + 1}/{latency_runs}: ")
            show_step(step)
            lat_steps.append(step)

    profile: dict[str, Any] = {}
    if args.profile and (args.profile_rate or best):
        rate = args.profile_rate or best
        pdir = Settings().state_dir / "bench-engine" / "profile" / args.target
        for old in pdir.glob("*.txt"):  # an earlier run's roles (another layout) are not ours
            old.unlink()
        step = run_step(opts, rate, profile_dir=pdir, label="profile: ")
        show_step(step)
        profile = {"rate": rate, "step": step.summary(), "roles": {}}
        for f in sorted(pdir.glob("*.txt")):
            profile["roles"][f.stem] = summarize_profile(f, opts.duration)
        show_profile(profile)

    figures: dict[str, Any] = {
        "target": target.description, "layout": opts.layout.label(),
        "kafka_client": args.client or "aiokafka",
        "partitions": opts.partitions, "window_s": opts.duration, "drain_s": opts.drain,
        "slope_limit_of_rate": opts.slope_limit, "records_per_execution": RECORDS_PER_EXECUTION,
        "code": code_state(),
        "load_before": [round(x, 2) for x in load],
        "broker_partitions_before": partitions_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "pytest_running_at_start": len(busy),
        "max_sustainable_per_s": best,
        "steps": [s.summary() for s in steps],
    }
    if lat_steps:
        figures["latency_rate_per_s"] = half
        for k in ("p50", "p99", "max"):
            figures[f"latency_{k}_ms_median"] = round(median([s.lat_ms[k] for s in lat_steps]), 1)
            figures[f"latency_{k}_ms_runs"] = [s.lat_ms[k] for s in lat_steps]
        figures["latency_runs"] = [s.summary() for s in lat_steps]
    figures["bench_wall_s"] = round(time.monotonic() - t_begin, 1)
    show_summary(figures, steps, lat_steps)
    if not args.no_write:
        name = {"engine": "engine", "raw": "engine-raw-pingpong",
                "faust": "engine-faust-pingpong"}[args.target]
        if args.classic:
            name += "-classic"
        if args.client:
            name += f"-{args.client}"
        if args.rates or args.latency_rate or args.duration or args.latency_runs is not None:
            name += "-custom"  # a partial run does not replace the full run's figures
        elif quick:
            name += "-quick"
        console.print(f"written to {write_results(name, figures)}")
        if profile:
            pname = "engine-profile" if args.target == "engine" else f"engine-{args.target}-profile"
            if name.endswith(("-custom", "-quick")):
                pname += "-" + name.rsplit("-", 1)[1]
            console.print(f"written to {write_results(pname, profile)}")


def broker_partitions() -> int:
    """Partitions on the broker now (-1 when it cannot be asked)."""
    from confluent_kafka.admin import AdminClient

    from flowlog.settings import Settings

    try:
        admin = AdminClient({"bootstrap.servers": Settings().bootstrap_servers})
        return sum(len(t.partitions) for t in admin.list_topics(timeout=10).topics.values())
    except Exception:
        return -1


def show_profile(profile: dict[str, Any]) -> None:
    table = Table("role", "busy (% core)", "where the time goes (% of busy samples)",
                  title=f"profile at {profile['rate']:g}/s (py-spy, 100 Hz)")
    for role, p in profile["roles"].items():
        shares = ", ".join(f"{k} {v}" for k, v in p["share_percent"].items())
        table.add_row(role, f"{p['busy_percent_of_core']}", shares)
    console.print(table)


def _short(name: str) -> str:
    role, _, index = name.partition("-")
    short = {"orchestrator": "orch", "dispatcher": "disp", "timers": "tim",  # old code
             "executor": "exe", "all": "all",
             "broker": "broker", "machine": "| machine"}.get(role, "bench")
    return short + (index if index not in ("", "0") else "")


def show_summary(figures: dict[str, Any], steps: list[Step], lat_steps: list[Step]) -> None:
    if steps:
        table = Table("rate/s", "sent/s", "finished", "backlog slope/s", "drain s",
                      "p50 ms", "p99 ms", "CPU % (per process; machine)", "sustainable",
                      title=f"{figures['target']}: rate steps ({figures['layout']})")
        for s in steps:
            cpu = " ".join(f"{_short(k)} {v:.0f}" for k, v in s.cpu.items())
            table.add_row(f"{s.rate:g}", f"{s.send_rate:.0f}", str(s.finished),
                          f"{s.slope:+.1f}±{s.slope_se:.1f}",
                          "—" if s.drain_s is None else f"{s.drain_s:.1f}",
                          str(s.lat_ms.get("p50")), str(s.lat_ms.get("p99")), cpu,
                          "yes" if s.sustainable else f"no: {s.why}")
        console.print(table)
    table = Table("figure", "value", "runs")
    table.add_row("max sustainable rate (executions/s)", f"{figures['max_sustainable_per_s']:g}",
                  "")
    if lat_steps:
        for k in ("p50", "p99", "max"):
            table.add_row(f"latency {k} at {figures['latency_rate_per_s']:g}/s (ms, median)",
                          f"{figures[f'latency_{k}_ms_median']}",
                          ", ".join(str(v) for v in figures[f"latency_{k}_ms_runs"]))
    table.add_row("bench wall time (s)", f"{figures['bench_wall_s']}", "")
    console.print(table)


if __name__ == "__main__":
    main()
