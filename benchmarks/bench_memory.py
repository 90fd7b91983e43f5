"""Memory over a long run: does a role's RSS stay flat while executions keep finishing?

    python benchmarks/bench_memory.py [--rate 100] [--minutes 30] [--classic]
                                      [--every 10]

One step of the engine benchmark's harness (fresh topics, fresh worker processes, the
5-node no-op DAG, fixed-rate starter) held for ``--minutes``; every worker's RSS is sampled
every ``--every`` seconds with the number of executions finished so far. Reported per
role: RSS after the first tenth of the run (warmed up), at the end, the change in % and
the least-squares slope in MB per 100,000 executions (issue 8's measure: the orchestrator
grew by 224 MB per 100,000 executions before finished executions left memory).
The default layout (`processor + executor`) writes benchmarks/results/memory-processor.json;
``--classic`` runs `orchestrator + dispatcher + executor` and writes memory.json. Needs
`make up`.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from _common import write_results
from _engine_harness import Layout, Options, run_step, show_step, slope


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=100.0, help="executions per second")
    ap.add_argument("--minutes", type=float, default=30.0, help="length of the run")
    ap.add_argument("--classic", action="store_true",
                    help="orchestrator + dispatcher + executor instead of the default layout, "
                    "processor + executor")
    ap.add_argument("--processor", action="store_true",
                    help="the default layout (accepted for older command lines)")
    ap.add_argument("--every", type=float, default=10.0, help="RSS sampling period (s)")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--window", type=int, default=None,
                    help="finished executions kept per partition for the run (sets "
                         "FLOWLOG_FINISHED_WINDOW; default: the settings'). A "
                         "slow run fills the default window late: scale it to the rate to "
                         "see the bound early")
    ap.add_argument("--worker-script", default=None,
                    help="run the workers through this script instead of `-m flowlog.cli` "
                         "(e.g. a wrapper that starts tracemalloc)")
    args = ap.parse_args()
    layout = Layout() if args.classic else Layout(processors=1)
    opts = Options(layout=layout, partitions=args.partitions, duration=args.minutes * 60,
                   drain=60.0, rss_every_s=args.every, worker_script=args.worker_script,
                   env={} if args.window is None
                   else {"FLOWLOG_FINISHED_WINDOW": str(args.window)})
    load_before = [round(x, 2) for x in os.getloadavg()]
    step = run_step(opts, args.rate, label="memory: ")
    show_step(step)
    roles = sorted({r for _, _, per in step.rss for r in per})
    skip = len(step.rss) // 10  # the first tenth: warming up (imports, caches, pools)
    per_role: dict[str, Any] = {}
    for role in roles:
        points = [(t, n, per[role]) for t, n, per in step.rss[skip:] if per.get(role)]
        if len(points) < 3:
            continue
        first, last = points[0][2], points[-1][2]
        b, se = slope([(float(n), mb) for _, n, mb in points])
        second = [(t, n, per[role]) for t, n, per in step.rss[len(step.rss) // 2:]
                  if per.get(role)]
        per_role[role] = {
            "rss_mb_start": first, "rss_mb_end": last, "rss_mb_max": max(p[2] for p in points),
            "change_percent": round((last - first) / first * 100, 1),
            "mb_per_100k_executions": round(b * 100_000, 1),
            "mb_per_100k_executions_se": round(se * 100_000, 1),
            "executions_in_window": points[-1][1] - points[0][1],
            # a window still filling in the first tenth shows as growth above; the second
            # half is the steady state once it is full (docs/engine.md, "Memory")
            "second_half_change_percent": round(
                (second[-1][2] - second[0][2]) / second[0][2] * 100, 1) if second else None,
        }
        print(f"{role:>14}: RSS {first:.0f} → {last:.0f} MB "
              f"({per_role[role]['change_percent']:+.1f} %), "
              f"{per_role[role]['mb_per_100k_executions']:+.1f} ± "
              f"{per_role[role]['mb_per_100k_executions_se']:.1f} MB per 100,000 executions; "
              f"second half {per_role[role]['second_half_change_percent']:+.1f} %")
    figures = {"layout": layout.label(), "rate": args.rate, "minutes": args.minutes,
               "finished_window": args.window,
               "load_before": load_before,
               "load_after": [round(x, 2) for x in os.getloadavg()],
               "step": step.summary(), "roles": per_role, "samples": step.rss}
    name = "memory" if args.classic else "memory-processor"
    print(f"written to {write_results(name, figures)}")


if __name__ == "__main__":
    main()
