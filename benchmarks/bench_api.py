"""Query API benchmark (issue 12): execution detail and execution list latency at a fixed
request rate on loopback, optionally while the engine benchmark runs at half its highest
rate.

    python benchmarks/bench_api.py                          # 300 req/s, 20 s, API alone
    python benchmarks/bench_api.py --engine                 # beside the engine at half rate
    python benchmarks/bench_api.py --rate 300 --duration 30 --executions 100000

Needs the local services (`make up`). Method: a fresh schema holds ``--executions``
executions (one recorded history folded by the projections' own fold, its rows copied under
new ids, tenants, workflows, statuses and times, written with the read-model projector's
`write_rows`); the first ``--detailed`` of them also have their node runs and events index,
and the detail requests pick among those. The API runs as its own process (`flowlog worker
api`) on a free port. The load is open-loop: request i is due at t0 + i/rate whatever the
answers do, half detail (`GET /api/executions/{id}`) and half list (`GET /api/executions`
with limit 50: no filter, a status filter, a workflow filter, in turn), each with an API
key of one tenant (every query scoped in SQL as usual). Latency is measured from the due
time (a late send counts against the API: no coordinated omission); the time from the
actual send is reported beside it.

CPU cost per request (much less noisy than latency on a shared machine): the API
process's CPU time (utime + stime from /proc, its worker processes included) over the
measured window divided by the requests answered; the same for the PostgreSQL backends of
the API's pool (found by their application_name, which names the schema) and for the load
generator. ``--profile`` records the API process with py-spy during the first run
(``benchmarks/results/api_profile.txt``, top functions by own and total samples).

The machine has 2 cores shared with other work (`load_before`); the load generator itself
takes part of one. Writes benchmarks/results/api.json.

    python benchmarks/bench_api.py --rate 100 --runs 1 --keep       # keep the loaded schema
    python benchmarks/bench_api.py --schema benchapi_xxxxxxxx ...   # reuse it (no loading)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import median, write_results
from flowlog.aggregates.execution.events import event_from_dict
from flowlog.api.auth.bootstrap import auth_service
from flowlog.projections.fold import Coords, FoldResult, Rows, fold_record
from flowlog.projections.migrate import migrate
from flowlog.projections.readmodel import ReadModelProjector, write_rows
from rich.console import Console
from rich.progress import Progress

from flowlog.settings import REPO_ROOT, Settings

console = Console(highlight=False)
HISTORY = REPO_ROOT / "tests" / "fixtures" / "histories" / "support_triage_billing.json"
TENANTS = 50
STATUSES = ["succeeded"] * 6 + ["failed", "running", "waiting", "cancelled"]
SOURCES = ["webhook", "schedule", "manual", "event"]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def load(settings: Settings, schema: str, n: int, detailed: int) -> None:
    doc = json.loads(HISTORY.read_text())
    events = [event_from_dict(e) for e in doc["events"]]
    rows, result = Rows(), FoldResult()
    decisions: list[list[Any]] = []
    for e in events:
        if decisions and decisions[-1][-1].causation_id == e.causation_id:
            decisions[-1].append(e)
        else:
            decisions.append([e])
    for d in decisions:
        fold_record(rows, d, Coords("bench", 0, 0), result)
    base = next(iter(rows.executions.values()))
    runs = list(rows.node_runs.values())
    index = result.events
    rm = ReadModelProjector(settings, schema)
    await rm.connect()
    conn = rm.conn
    assert conn is not None
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("writing executions", total=n)
        for k in range(0, n, 10_000):
            xs, nrs, evs = [], [], []
            for i in range(k, min(n, k + 10_000)):
                eid = f"x{i:07d}"
                created = base["created_at"] + timedelta(seconds=i)
                tenant = f"t{i % TENANTS}"
                xs.append(dict(base, execution_id=eid, tenant=tenant,
                               workflow_id=f"wf{i % 20}", status=STATUSES[i % len(STATUSES)],
                               trigger_source=SOURCES[i % 4], created_at=created,
                               last_event_at=created + timedelta(seconds=7)))
                if i < detailed:
                    nrs += [dict(r, execution_id=eid, tenant=tenant) for r in runs]
                    evs += [dict(e, execution_id=eid) for e in index]
            async with conn.transaction():
                await write_rows(conn, "workflow_executions", xs)
                await write_rows(conn, "node_runs", nrs)
                await write_rows(conn, "execution_events", evs)
            progress.advance(task, len(xs))
    await conn.execute("ANALYZE")
    await rm.close()


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live children (the API's extra workers)."""
    total = proc_cpu(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                total += proc_cpu(int(stat.parent.name))
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue
    return total


def pg_backends(settings: Settings, schema: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend of the benchmark's API pool (local server)."""
    with psycopg.connect(settings.pg_dsn, autocommit=True) as c:
        pids = [r[0] for r in c.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
            (f"flowlog-api:{schema}"[:63],))]
    return {pid: proc_cpu(pid) for pid in pids}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_api(settings: Settings, schema: str, port: int, workers: int = 1
              ) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FLOWLOG_PG_SCHEMA": schema, "FLOWLOG_API_PORT": str(port),
           "FLOWLOG_API_WORKERS": str(workers),
           "FLOWLOG_AUTH_RATE_PER_S": "1000000", "FLOWLOG_AUTH_RATE_BURST": "1000000",
           "FLOWLOG_TOPIC_PREFIX": settings.topic_prefix}
    proc = subprocess.Popen([sys.executable, "-m", "flowlog.cli", "worker", "api"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the API process ended: {proc.stderr.read().decode()[-2000:]}"
                               if proc.stderr else "the API process ended")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the API did not become ready in 60 s")


def summarise_profile(raw: Path, out: Path, top: int = 40) -> None:
    """py-spy's raw (collapsed stacks) output: the top functions by own samples and by
    samples anywhere on the stack."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    if not raw.exists():
        out.write_text("py-spy wrote no samples (is it installed and allowed to ptrace?)\n")
        return
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            total[f] = total.get(f, 0) + n
    lines = [f"{samples} samples", "", "own %  function"]
    lines += [f"{100 * v / samples:5.1f}  {k}" for k, v in
              sorted(own.items(), key=lambda kv: -kv[1])[:top]]
    lines += ["", "total %  function"]
    lines += [f"{100 * v / samples:5.1f}  {k}" for k, v in
              sorted(total.items(), key=lambda kv: -kv[1])[:top]]
    out.write_text("\n".join(lines) + "\n")


async def drive(url: str, key: str, tenant_ids: list[str], rate: float, duration: float,
                began: Any = None) -> dict[str, dict[str, list[Any]]]:
    """Open-loop load with aiohttp (httpx's pool scans its queue per request: at hundreds of
    requests in flight the client, not the API, was the bottleneck)."""
    import aiohttp

    out: dict[str, dict[str, list[Any]]] = {
        k: {"due": [], "sent": [], "errors": []} for k in ("detail", "list")}
    lists = ["/api/executions?limit=50", "/api/executions?limit=50&status=failed",
             "/api/executions?limit=50&workflow=wf7"]
    rnd = random.Random(7)
    connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=60)
    async with aiohttp.ClientSession(url, connector=connector, headers={"X-API-Key": key},
                                     timeout=aiohttp.ClientTimeout(total=60)) as client:
        for _ in range(20):  # warm the connections and the pool
            async with client.get(lists[0]) as r:
                await r.read()
        loop = asyncio.get_running_loop()
        if began is not None:
            began()
        t0 = loop.time() + 0.2
        total = int(rate * duration)

        async def one(i: int, due: float) -> None:
            kind = "detail" if i % 2 == 0 else "list"
            path = (f"/api/executions/{rnd.choice(tenant_ids)}" if kind == "detail"
                    else lists[(i // 2) % 3])
            sent = loop.time()
            try:
                async with client.get(path) as r:
                    await r.read()
                    status = r.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                out[kind]["errors"].append(type(exc).__name__)
                return
            end = loop.time()
            if status != 200:
                out[kind]["errors"].append(status)
                return
            out[kind]["due"].append((end - due) * 1000)
            out[kind]["sent"].append((end - sent) * 1000)

        tasks = []
        for i in range(total):  # each request starts at its due time
            due = t0 + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
    return out


def run_once(settings: Settings, schema: str, rate: float, duration: float, key: str,
             ids: list[str], workers: int = 1, profile: Path | None = None
             ) -> dict[str, Any]:
    port = free_port()
    proc = start_api(settings, schema, port, workers)
    time.sleep(3 * (workers - 1))  # the other processes start after the first answers
    cpu: dict[str, float] = {}
    spy: subprocess.Popen[bytes] | None = None

    def began() -> None:  # after the warm-up requests, when the measured load starts
        nonlocal spy
        cpu["api"], cpu["gen"] = tree_cpu(proc.pid), time.process_time()
        cpu["wall"] = time.monotonic()
        pg0.update(pg_backends(settings, schema))
        if profile is not None:
            spy = subprocess.Popen(
                ["py-spy", "record", "--pid", str(proc.pid), "--format", "raw", "--output",
                 str(raw), "--rate", "200", "--nonblocking",
                 "--duration", str(int(duration))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    pg0: dict[int, float] = {}
    raw = Path(tempfile.gettempdir()) / f"api_profile_{os.getpid()}.raw"
    try:
        res = asyncio.run(drive(f"http://127.0.0.1:{port}", key, ids, rate, duration, began))
        api_cpu = tree_cpu(proc.pid) - cpu["api"]
        gen_cpu = time.process_time() - cpu["gen"]
        wall = time.monotonic() - cpu["wall"]
        pg1 = pg_backends(settings, schema)
        pg_cpu = sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items())
    finally:
        if spy is not None:
            spy.wait(duration + 30)
        proc.terminate()
        proc.wait(15)
    if profile is not None:
        summarise_profile(raw, profile)
        raw.unlink(missing_ok=True)
    answered = sum(len(v["due"]) for v in res.values())
    fig: dict[str, Any] = {
        "api_cpu_ms_per_request": round(api_cpu * 1000 / max(1, answered), 3),
        "pg_cpu_ms_per_request": round(pg_cpu * 1000 / max(1, answered), 3),
        "loadgen_cpu_ms_per_request": round(gen_cpu * 1000 / max(1, answered), 3),
        "api_cpu_percent": round(api_cpu * 100 / wall, 1), "wall_s": round(wall, 2),
        "load_during": list(os.getloadavg())}
    for kind, v in res.items():
        fig[kind] = {"requests": len(v["due"]), "errors": len(v["errors"]),
                     "p50_ms": round(pct(v["due"], 0.5), 2),
                     "p99_ms": round(pct(v["due"], 0.99), 2),
                     "p99_from_send_ms": round(pct(v["sent"], 0.99), 2)}
    return fig


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=300.0, help="requests per second")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of load per run")
    ap.add_argument("--runs", type=int, default=3, help="runs (the median is reported)")
    ap.add_argument("--executions", type=int, default=100_000)
    ap.add_argument("--detailed", type=int, default=5_000,
                    help="executions with node runs and events (detail targets)")
    ap.add_argument("--workers", type=int, default=1, help="FLOWLOG_API_WORKERS")
    ap.add_argument("--engine", action="store_true",
                    help="run the engine benchmark at half its highest rate meanwhile")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--keep", action="store_true",
                    help="keep the loaded schema (printed) for --schema next time")
    ap.add_argument("--schema", help="reuse a schema kept by --keep (same --executions and "
                                     "--detailed); it is kept again")
    ap.add_argument("--profile", action="store_true",
                    help="py-spy the API during run 1: results/api_profile.txt")
    args = ap.parse_args(argv)
    settings = Settings().model_copy(update={"topic_prefix": f"bench.{uuid.uuid4().hex[:8]}."})
    schema = args.schema or f"benchapi_{uuid.uuid4().hex[:8]}"
    keep = args.keep or bool(args.schema)
    load_before = list(os.getloadavg())
    if not args.schema:
        with psycopg.connect(settings.pg_dsn, autocommit=True) as c:
            c.execute(f'CREATE SCHEMA "{schema}"')
    engine_thread: threading.Thread | None = None
    engine_fig: dict[str, Any] = {}
    try:
        s = settings.model_copy(update={"pg_schema": schema})
        if not args.schema:
            migrate(settings, schema)
            console.print(f"loading {args.executions:,} executions into {schema} ...")
            asyncio.run(load(s, schema, args.executions, args.detailed))

        async def make_key() -> str:
            async with auth_service(s, schema) as svc:
                return (await svc.create_key(tenant="t7", role="viewer", name="bench")).key

        key = asyncio.run(make_key())
        ids = [f"x{i:07d}" for i in range(7, args.detailed, TENANTS)]  # tenant t7's
        if args.engine:
            engine_fig, engine_thread = start_engine(args.duration * args.runs + 60)
        runs = []
        for n in range(args.runs):
            profile = (Path(__file__).parent / "results" / "api_profile.txt"
                       if args.profile and n == 0 else None)
            fig = run_once(s, schema, args.rate, args.duration, key, ids, args.workers,
                           profile)
            errors = fig["detail"]["errors"] + fig["list"]["errors"]
            console.print(f"run {n + 1}: detail p50/p99 {fig['detail']['p50_ms']}/"
                          f"{fig['detail']['p99_ms']} ms, list p50/p99 {fig['list']['p50_ms']}/"
                          f"{fig['list']['p99_ms']} ms ({errors} errors); CPU ms/request: "
                          f"API {fig['api_cpu_ms_per_request']}, PostgreSQL "
                          f"{fig['pg_cpu_ms_per_request']}, load generator "
                          f"{fig['loadgen_cpu_ms_per_request']} (API at "
                          f"{fig['api_cpu_percent']} % of a core; load "
                          f"{fig['load_during'][0]:.1f})")
            runs.append(fig)
    finally:
        if engine_thread is not None:
            engine_thread.join()
        if keep:
            console.print(f"kept schema {schema} (drop it when done: DROP SCHEMA \"{schema}\" "
                          "CASCADE)")
        else:
            with psycopg.connect(settings.pg_dsn, autocommit=True) as c:
                c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    figures: dict[str, Any] = {
        "rate_per_s": args.rate, "duration_s": args.duration, "executions": args.executions,
        "load_before": load_before, "with_engine": args.engine, "runs": runs,
        "api_workers": args.workers,
        "detail_p99_ms": median([r["detail"]["p99_ms"] for r in runs]),
        "list_p99_ms": median([r["list"]["p99_ms"] for r in runs]),
        "detail_p50_ms": median([r["detail"]["p50_ms"] for r in runs]),
        "list_p50_ms": median([r["list"]["p50_ms"] for r in runs]),
        "api_cpu_ms_per_request": median([r["api_cpu_ms_per_request"] for r in runs]),
        "pg_cpu_ms_per_request": median([r["pg_cpu_ms_per_request"] for r in runs])}
    if engine_fig:
        figures["engine"] = engine_fig
    console.print(f"[bold]median of {len(runs)} runs at {args.rate:g} req/s"
                  f"{' beside the engine' if args.engine else ''}: detail p99 "
                  f"{figures['detail_p99_ms']} ms, list p99 {figures['list_p99_ms']} ms; "
                  f"CPU ms/request: API {figures['api_cpu_ms_per_request']}, PostgreSQL "
                  f"{figures['pg_cpu_ms_per_request']}[/]")
    if not args.no_write:
        name = "api_engine" if args.engine else "api"
        if args.rate != 300:  # the goal's rate keeps the plain name
            name += f"_rate{args.rate:g}"
        console.print(f"wrote {write_results(name, figures)}")


def start_engine(duration: float) -> tuple[dict[str, Any], threading.Thread]:
    """The engine benchmark's step at half the highest sustainable rate, in a thread;
    returns once its measured window has begun."""
    import _engine_harness as h

    engine = json.loads((Path(__file__).parent / "results" / "engine.json").read_text())
    rate = engine["figures"]["max_sustainable_per_s"] / 2
    began = threading.Event()
    fig: dict[str, Any] = {"rate": rate}
    original = h.Observer.start

    def start(self: Any) -> None:
        original(self)
        began.set()

    h.Observer.start = start  # type: ignore[method-assign]

    def run() -> None:
        try:
            step = h.run_step(h.Options(duration=duration), rate, label="engine: ")
            fig["summary"] = step.summary()
        except Exception as exc:
            fig["error"] = repr(exc)
        finally:
            began.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    began.wait(300)
    time.sleep(5)  # the warm-up executions finish before the API load starts
    return fig, t


if __name__ == "__main__":
    main()
