"""Projection benchmarks (issue 9): projector throughput on one process, rebuild rate, and
projection lag while the engine benchmark runs at half its highest rate.

    python benchmarks/bench_projections.py                 # all three (about 4 minutes)
    python benchmarks/bench_projections.py --only throughput --executions 20000
    python benchmarks/bench_projections.py --only lag --rate 560 --duration 20

Needs the local services (`make up`). Method:

* throughput: fresh topics (prefix ``bench.<random>.``, 6 partitions) filled with
  ``--executions`` recorded histories (the four of tests/fixtures/histories under new
  ids, one ExecutionEventBatch record per decision, executions interleaved), and a fresh
  schema; then one projector (readmodel, then analytics, each alone) runs in this process
  from offset 0 until it has applied every record. Figure: events applied per second from
  its first seek (the consumer-group join, ~2-3 s, excluded and reported apart) to the
  last commit (record decoding, fold, COPY, merge, commit; Redis publishing off), and
  events per CPU-second of the process (what it would do with a core to itself).
* rebuild: `flowlog projections rebuild readmodel` on the same log (shadow schema, fold,
  COPY, read-back check, swap). Figure: events per second of the whole rebuild.
* lag: the engine benchmark's step (benchmarks/_engine_harness.py: one orchestrator, one
  timers and one executor process, the 5-node DAG) at ``--rate`` (default half the
  highest sustainable rate in benchmarks/results/engine.json), with one more process,
  `flowlog worker projector` (the readmodel projector; `--projectors` to add analytics
  to the same process). A sampler reads the readmodel projector's
  stored offsets every 5 ms; a record's projection lag is the first sample at which its
  offset is stored minus its Kafka timestamp (the orchestrator's append; one clock).
  Figures: lag p50/p99/max over the window's records, beside the engine's own latency
  and CPU in the same run.

The machine has 2 cores shared with other work (see `load_before`); figures move with it.
Writes benchmarks/results/projections.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results
from flowlog.projections.live import LivePublisher
from flowlog.projections.migrate import migrate
from flowlog.projections.ops import rebuild
from flowlog.projections.runner import ProjectorRunner
from flowlog.projections.worker import make_projector
from rich.console import Console

from flowlog.settings import Settings
from tests.integration.projections.support import Log, executions, setup

console = Console()
RESULTS = Path(__file__).resolve().parent / "results"


def _drop(settings: Settings, schema: str) -> None:
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _drop_topics(settings: Settings) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    topics = [t for t in admin.list_topics(timeout=10).topics
              if t.startswith(settings.topic_prefix)]
    if topics:
        for fut in admin.delete_topics(topics).values():
            try:
                fut.result(30)
            except Exception:
                pass


async def _project(settings: Settings, name: str) -> dict[str, Any]:
    runner = ProjectorRunner(settings, make_projector(name, settings),
                             LivePublisher(settings, enabled=False))
    stop = asyncio.Event()
    from flowlog.projections import kafka as pk

    ends = await pk.end_offsets(settings, runner.projector.topic_names)
    target = sum(ends.values())
    began = time.perf_counter()
    cpu0 = time.process_time()
    task = asyncio.create_task(runner.run(stop))
    while runner.stats["records"] < target:
        await asyncio.sleep(0.02)
        if task.done():
            task.result()
    end = time.perf_counter()
    secs = end - (runner.assigned_at or began)  # from the first seek: group join excluded
    cpu = time.process_time() - cpu0
    stop.set()
    await task
    return {"projector": name, "records": runner.stats["records"],
            "events": runner.stats["events"], "seconds": round(secs, 2),
            "events_per_s": round(runner.stats["events"] / secs),
            "group_join_s": round((runner.assigned_at or began) - began, 2),
            "batches": runner.stats["batches"], "process_cpu_s": round(cpu, 2),
            "events_per_cpu_s": round(runner.stats["events"] / cpu),
            "batch_records": settings.projector_batch_records}


def throughput_and_rebuild(n: int, batch: int, only: str) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    schema = f"bench_{tag}"
    settings = Settings().model_copy(update={
        "topic_prefix": f"bench.{tag}.", "default_partitions": 6, "pg_schema": schema,
        "projector_batch_records": batch})
    out: dict[str, Any] = {"executions": n}
    try:
        setup(settings, schema)
        log = Log(settings)
        t0 = time.perf_counter()
        execs = list(executions(n, f"b{tag}"))
        log.interleaved(execs)
        log.flush()
        out.update(records=log.records, events=log.events,
                   fill_s=round(time.perf_counter() - t0, 1))
        console.print(f"log: {log.records:,} records, {log.events:,} events "
                      f"({n:,} executions) in {out['fill_s']}s")
        if only in ("all", "throughput"):
            out["throughput"] = []
            for name in ("readmodel", "analytics"):
                r = asyncio.run(_project(settings, name))
                console.print(f"projector {name}: {r['events']:,} events in {r['seconds']}s "
                              f"= [bold]{r['events_per_s']:,} events/s[/] (one process; "
                              f"{r['process_cpu_s']}s of its CPU: "
                              f"{r['events_per_cpu_s']:,} events per CPU-second)")
                out["throughput"].append(r)
        if only in ("all", "rebuild"):
            if only == "rebuild":
                migrate(settings, schema)
            rep = asyncio.run(rebuild(settings, "readmodel"))
            out["rebuild"] = {"projection": "readmodel", "events": rep.events,
                              "records": rep.records, "seconds": round(rep.seconds, 2),
                              "events_per_s": round(rep.events_per_s)}
            console.print(f"rebuild readmodel: {rep.events:,} events in {rep.seconds:.1f}s = "
                          f"[bold]{rep.events_per_s:,.0f} events/s[/]")
    finally:
        _drop(settings, schema)
        _drop_topics(settings)
    return out


# --- lag while the engine runs ----------------------------------------------------------

class LagProbe:
    """Kafka timestamps of execution-events records, and when each became stored."""

    def __init__(self, settings: Settings, schema: str) -> None:
        self.settings, self.schema = settings, schema
        self.topic = settings.topic_prefix + "execution-events"
        self.appended: dict[tuple[int, int], float] = {}  # (partition, offset) -> ts
        self.stored: list[tuple[float, dict[int, int]]] = []  # (time, partition -> next)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._consume, daemon=True),
                        threading.Thread(target=self._sample, daemon=True)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)

    def _consume(self) -> None:
        c = Consumer({"bootstrap.servers": self.settings.bootstrap_servers,
                      "group.id": f"lagprobe-{uuid.uuid4().hex[:6]}",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe([self.topic])
        while not self.stop.is_set():
            for m in c.consume(500, 0.1):
                if m.error() is None:
                    self.appended[(m.partition(), m.offset())] = m.timestamp()[1] / 1000
        c.close()

    def _sample(self) -> None:
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.settings.pg_dsn, autocommit=True,
                                           options=f"-c search_path={self.schema}")
                rows = conn.execute(
                    "SELECT partition, next_offset FROM projection_offsets WHERE "
                    "projector = 'readmodel' AND topic = %s", (self.topic,)).fetchall()
                self.stored.append((time.time(), {p: o for p, o in rows}))
            except psycopg.Error:
                conn = None
            time.sleep(0.005)

    def lags(self, since: float, until: float) -> list[float]:
        out = []
        import bisect

        times = [t for t, _ in self.stored]
        for (p, o), ts in self.appended.items():
            if not since <= ts <= until:
                continue
            i = bisect.bisect_left(times, ts)
            while i < len(self.stored) and self.stored[i][1].get(p, 0) <= o:
                i += 1
            if i < len(self.stored):
                out.append(self.stored[i][0] - ts)
        return out


def lag_under_engine(rate: float, duration: float, projectors: str) -> dict[str, Any]:
    import _engine_harness as h

    schema = f"benchlag_{uuid.uuid4().hex[:8]}"
    probes: list[LagProbe] = []
    original = h.start_workers

    def start_workers(target: Any, settings: Settings, layout: Any, logdir: Path,
                      env_extra: dict[str, str]) -> list[Any]:
        s = settings.model_copy(update={"pg_schema": schema})
        migrate(s, schema)
        probe = LagProbe(s, schema)
        probes.append(probe)
        probe.start()
        return original(target, settings, layout, logdir,
                        {**env_extra, "FLOWLOG_PG_SCHEMA": schema,
                         "FLOWLOG_PROJECTORS": projectors,
                         "FLOWLOG_PROJECTOR_LIVE_STATUS": "true"})

    class WithProjector(h.Layout):  # type: ignore[misc,name-defined]
        def roles(self) -> list[str]:
            return [*super().roles(), "projector"]

    h.start_workers = start_workers
    opts = h.Options(duration=duration, layout=WithProjector())
    began = time.time()
    try:
        step = h.run_step(opts, rate, label="engine + projector: ")
    finally:
        h.start_workers = original
        for p in probes:
            p.close()
        _drop(Settings(), schema)
    h.show_step(step)
    probe = probes[0]
    lags = sorted(x * 1000 for x in probe.lags(began + step.startup_s,
                                               began + step.startup_s + duration))
    fig = {"rate": rate, "duration_s": duration, "records": len(lags),
           "projector_process_runs": json.loads(projectors),
           "lag_ms": {"p50": round(h.pct(lags, 0.5), 1), "p99": round(h.pct(lags, 0.99), 1),
                      "max": round(max(lags, default=float("nan")), 1)},
           "engine": step.summary()}
    console.print(f"projection lag at {rate:g} executions/s: p50 {fig['lag_ms']['p50']} ms, "
                  f"[bold]p99 {fig['lag_ms']['p99']} ms[/], max {fig['lag_ms']['max']} ms "
                  f"over {len(lags):,} records; engine latency p50/p99 "
                  f"{step.lat_ms.get('p50')}/{step.lat_ms.get('p99')} ms; CPU {step.cpu}")
    return fig


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["all", "throughput", "rebuild", "lag"], default="all")
    ap.add_argument("--executions", type=int, default=20_000,
                    help="executions in the log of the throughput and rebuild runs")
    ap.add_argument("--batch", type=int, default=2000, help="records per transaction")
    ap.add_argument("--rate", type=float, help="engine rate for the lag run (default: half "
                    "the highest sustainable rate in results/engine.json)")
    ap.add_argument("--duration", type=float, default=20.0, help="lag window (s)")
    ap.add_argument("--projectors", default='["readmodel"]',
                    help="FLOWLOG_PROJECTORS of the projector process in the lag run (the lag "
                    "measured is the readmodel's)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    figures: dict[str, Any] = {}
    previous = RESULTS / "projections.json"
    if args.only != "all" and previous.exists():  # one part again: keep the others' figures
        figures = json.loads(previous.read_text())["figures"]
    figures["load_before"] = list(os.getloadavg())
    if args.only in ("all", "throughput", "rebuild"):
        figures.update(throughput_and_rebuild(args.executions, args.batch, args.only))
    if args.only in ("all", "lag"):
        rate = args.rate
        if rate is None:
            engine = json.loads((RESULTS / "engine.json").read_text())
            rate = engine["figures"]["max_sustainable_per_s"] / 2
        figures.setdefault("lag_runs", []).append(
            lag_under_engine(rate, args.duration, args.projectors))
        figures["lag"] = figures["lag_runs"][-1]
    figures["load_after"] = list(os.getloadavg())
    if not args.no_write:
        path = write_results("projections", figures)
        console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
