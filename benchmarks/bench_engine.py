"""The engine benchmark (issue 5): executions per second through the real engine on the
5-node DAG A → (B, C) → D → E (examples/bench-5node.yaml, every node the no-op tool run by
an executor), and trigger-to-completion latency at half the highest sustainable rate.

    python benchmarks/bench_engine.py                  # the full run (about 8 minutes)
    python benchmarks/bench_engine.py --quick          # about 2 minutes
    python benchmarks/bench_engine.py --rates 100,200 --duration 10 --latency-runs 1
    python benchmarks/bench_engine.py --profile        # + py-spy per role at the max rate
    python benchmarks/bench_engine.py --target raw     # the raw aiokafka ping-pong instead

Needs the local broker (`make up`). Method (docs/benchmarks.md):

* Every step runs on fresh topics (prefix `bench.<random>.`) and fresh consumer groups: it
  applies the topic catalog and the definition, starts the worker processes (default one
  orchestrator, one timers, one executor), waits until every group is stable with all
  partitions assigned, runs a warm-up (executions on every partition, all finished), then
  the fixed-rate starter for --duration seconds, then lets it drain, then stops the
  workers and deletes the topics and groups.
* The starter sends TriggerReceived through the SDK at a fixed schedule (i/rate), each
  with its send time in the input; a consumer of execution-events records each
  execution's terminal event. Latency = the terminal event's `occurred_at` (stamped by the
  orchestrator) − the trigger's send time (same clock: one machine).
* Sustainable: the starter kept its schedule (≥ 98 % sent); the backlog (sent − finished,
  sampled every 0.25 s) is flat: its least-squares slope over the last three quarters of
  the window is below 2 % of the rate, or not above twice its standard error (noise);
  every execution finished within --drain seconds after the starter stopped; none failed.
* Rates step up (--rates) until one is not sustainable, then --refine bisection steps
  between the last sustainable and the first not. Latency: --latency-runs runs at half the
  highest sustainable rate; the figures are the medians of the runs' p50/p99/max.

Prints tables; writes benchmarks/results/engine.json (engine-raw-pingpong.json for --target
raw, engine-profile.json for --profile).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from _common import median, write_results
from rich.console import Console
from rich.table import Table

from flowlog.settings import REPO_ROOT, Settings

console = Console(highlight=False)
if not console.is_terminal:
    console.width = 160
BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
DAG = REPO_ROOT / "examples" / "bench-5node.yaml"
WORKFLOW = "bench-5node"
TERMINAL = {"ExecutionSucceeded": True, "ExecutionFailed": False,
            "ExecutionCancelled": False, "ExecutionRejected": False}
DEFAULT_RATES = [50, 100, 200, 300, 400, 500, 600, 800, 1000, 1250, 1500, 2000]
QUICK_RATES = [100, 200, 400, 600, 800, 1000, 1500]
RECORDS_PER_EXECUTION = 17  # see docs/benchmarks.md


# --- what is benchmarked --------------------------------------------------------------------

class Starter(Protocol):
    def send(self) -> tuple[str, float]: ...
    def flush(self) -> int: ...
    def close(self) -> None: ...


class Target(Protocol):
    name: str
    description: str
    events_base: str

    def topic(self, prefix: str, base: str) -> str: ...
    def setup(self, settings: Settings) -> None: ...
    def worker_argv(self, settings: Settings, role: str) -> list[str]: ...
    def groups(self, settings: Settings) -> dict[str, int]: ...
    def starter(self, settings: Settings) -> Starter: ...
    def completion(self, value: bytes) -> tuple[str, bool, float] | None: ...


class EngineTarget:
    """The engine: `flowlog worker ROLE` processes, triggers through the SDK."""

    name = "engine"
    description = "flowlog engine, 5-node no-op tool DAG"
    events_base = "execution-events"

    def __init__(self, partitions: int, worker_script: str | None = None) -> None:
        from flowlog.schemas.codec import Codec

        self.partitions = partitions
        self.codec = Codec()
        self.worker_script = worker_script

    def topic(self, prefix: str, base: str) -> str:
        return prefix + base

    def setup(self, settings: Settings) -> None:
        from flowlog.streams.runtime.kafka import ensure_topics
        from flowlog.streams.runtime.tools import apply_definition

        ensure_topics(settings)
        apply_definition(settings, DAG)

    def worker_argv(self, settings: Settings, role: str) -> list[str]:
        entry = [self.worker_script] if self.worker_script else ["-m", "flowlog.cli"]
        return [sys.executable, *entry, "worker", role, "-l", "warning"]

    def groups(self, settings: Settings) -> dict[str, int]:
        p, prefix = self.partitions, settings.topic_prefix
        return {prefix + "orchestrator": 4 * p, prefix + "dispatcher": p,
                prefix + "executor": p}

    def starter(self, settings: Settings) -> Starter:
        return EngineStarter(settings)

    def completion(self, value: bytes) -> tuple[str, bool, float] | None:
        record = self.codec.decode(value).record
        for e in record["events"]:
            ok = TERMINAL.get(e["event_type"])
            if ok is not None:
                return record["execution_id"], ok, e["occurred_at"].timestamp()
        return None


class EngineStarter:
    """TriggerReceived through the producer SDK (confluent-kafka), one per send()."""

    def __init__(self, settings: Settings) -> None:
        from flowlog.schemas.events import TriggerReceived
        from flowlog.schemas.sdk import EventProducer

        self.cls = TriggerReceived
        self.producer = EventProducer.from_settings(settings)
        self.failed = 0

    def send(self) -> tuple[str, float]:
        t = time.time()
        event = self.cls(workflow_id=WORKFLOW, workflow_version=0, source="manual",
                         input={"sent_at": t})
        self.producer.publish(event).add_done_callback(self._done)
        return event.execution_id, t

    def _done(self, fut: Any) -> None:
        if fut.exception() is not None:
            self.failed += 1

    def flush(self) -> int:
        return self.producer.flush(30)

    def close(self) -> None:
        self.producer.close(30)


def make_target(name: str, partitions: int, worker_script: str | None = None) -> Target:
    if name == "raw":
        from bench_raw_pingpong import RawTarget

        return RawTarget(partitions)
    return EngineTarget(partitions, worker_script)


# --- processes, groups, CPU -----------------------------------------------------------------

@dataclass
class Layout:
    orchestrators: int = 1
    timers: int = 1
    executors: int = 1
    all_in_one: int = 0  # processes running every role (instead of the split above)

    def roles(self) -> list[str]:
        if self.all_in_one:
            return ["all"] * self.all_in_one
        return (["orchestrator"] * self.orchestrators + ["timers"] * self.timers
                + ["executor"] * self.executors)

    def label(self) -> str:
        if self.all_in_one:
            return f"{self.all_in_one}× all roles"
        return (f"{self.orchestrators} orchestrator, {self.timers} timers, "
                f"{self.executors} executor")


@dataclass
class Proc:
    role: str
    popen: subprocess.Popen[bytes]
    log: Path


def start_workers(target: Target, settings: Settings, layout: Layout, logdir: Path,
                  env_extra: dict[str, str]) -> list[Proc]:
    env = {**os.environ, "FLOWLOG_TOPIC_PREFIX": settings.topic_prefix,
           "FLOWLOG_DEFAULT_PARTITIONS": str(settings.default_partitions),
           "FLOWLOG_KAFKA_BOOTSTRAP": settings.bootstrap_servers, **env_extra}
    procs = []
    seen: Counter[str] = Counter()
    for role in layout.roles():
        log = logdir / f"{role}-{seen[role]}.log"
        seen[role] += 1
        with open(log, "wb") as out:
            popen = subprocess.Popen(target.worker_argv(settings, role), env=env,
                                     stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=REPO_ROOT)
        procs.append(Proc(log.stem, popen, log))
    return procs


def stop_workers(procs: list[Proc]) -> None:
    for p in procs:
        if p.popen.poll() is None:
            p.popen.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.popen.wait(20)
        except subprocess.TimeoutExpired:
            p.popen.kill()
            p.popen.wait(10)


def wait_assigned(settings: Settings, groups: dict[str, int], procs: list[Proc],
                  timeout: float) -> float:
    """Until every group is Stable with all its partitions assigned; returns seconds."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    t0 = time.monotonic()
    while True:
        dead = [p for p in procs if p.popen.poll() is not None]
        if dead:
            tail = dead[0].log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"worker {dead[0].role} exited ({dead[0].popen.returncode}):\n"
                               f"{tail}")
        ok = True
        for gid, fut in admin.describe_consumer_groups(list(groups)).items():
            try:
                desc = fut.result(10)
            except Exception:
                ok = False
                continue
            assigned = sum(len(m.assignment.topic_partitions) for m in desc.members)
            if desc.state != ConsumerGroupState.STABLE or assigned < groups[gid]:
                ok = False
        if ok:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"groups not assigned after {timeout:.0f}s: {sorted(groups)}")
        time.sleep(0.25)


def drop_everything(settings: Settings, groups: list[str]) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    for fut in admin.delete_consumer_groups(groups, request_timeout=15).values():
        try:
            fut.result(20)
        except Exception:
            pass
    topics = [t for t in admin.list_topics(timeout=15).topics
              if t.startswith(settings.topic_prefix)]
    if topics:
        for fut in admin.delete_topics(topics, operation_timeout=30).values():
            try:
                fut.result(40)
            except Exception:
                pass


def _ticks(pid: int) -> int:
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(parts[11]) + int(parts[12])  # utime + stime (fields 14, 15)
    except (OSError, IndexError, ValueError):
        return 0


def _machine_ticks() -> tuple[int, int]:
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def broker_pid(settings: Settings) -> int | None:
    try:
        return int((settings.state_dir / "kafka" / "kafka.pid").read_text().strip())
    except (OSError, ValueError):
        return None


class CpuMeter:
    """CPU seconds per process (and the whole machine) between start() and stop()."""

    HZ = os.sysconf("SC_CLK_TCK")

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.a = {k: _ticks(p) for k, p in self.pids.items()}
        self.m0 = _machine_ticks()

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.t0
        out = {k: round((_ticks(p) - self.a[k]) / self.HZ / wall * 100, 1)
               for k, p in self.pids.items()}
        busy, total = _machine_ticks()
        out["machine"] = round((busy - self.m0[0]) / max(1, total - self.m0[1])
                               * 100 * (os.cpu_count() or 1), 1)
        return out  # percent of one core; the machine has cpu_count × 100


# --- the observer ---------------------------------------------------------------------------

class Observer(threading.Thread):
    """Reads the events topic from the beginning; remembers each execution's end."""

    def __init__(self, target: Target, settings: Settings, partitions: int) -> None:
        super().__init__(name="observer", daemon=True)
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.target = target
        self.consumer = Consumer({
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"bench-observer-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10})
        topic = target.topic(settings.topic_prefix, target.events_base)
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                              for p in range(partitions)])
        self.done: dict[str, tuple[bool, float, float]] = {}  # id -> ok, ended, seen
        self.records = 0
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                for msg in self.consumer.consume(num_messages=2000, timeout=0.05):
                    value = msg.value()
                    if msg.error() is not None or value is None:
                        continue
                    self.records += 1
                    end = self.target.completion(value)
                    if end is not None and end[0] not in self.done:
                        self.done[end[0]] = (end[1], end[2], time.time())
        finally:
            self.consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


# --- one step -------------------------------------------------------------------------------

@dataclass
class Step:
    rate: float
    duration: float
    sent: int = 0
    send_rate: float = 0.0
    finished: int = 0
    failed: int = 0
    slope: float = 0.0
    slope_se: float = 0.0
    drain_s: float | None = None  # None: not all finished in time
    lat_ms: dict[str, float] = field(default_factory=dict)
    seen_ms: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    startup_s: float = 0.0
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    sustainable: bool = False
    why: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "rate": self.rate, "duration_s": self.duration, "sent": self.sent,
            "send_rate": round(self.send_rate, 1), "finished": self.finished,
            "failed": self.failed, "backlog_slope_per_s": round(self.slope, 2),
            "backlog_slope_se": round(self.slope_se, 2),
            "backlog_max": max((s - f for _, s, f in self.samples), default=0),
            "drain_s": None if self.drain_s is None else round(self.drain_s, 2),
            "latency_ms": self.lat_ms, "observed_latency_ms": self.seen_ms,
            "cpu_percent_of_core": self.cpu, "startup_s": round(self.startup_s, 1),
            "sustainable": self.sustainable, "why_not": self.why,
        }


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))]


def slope(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope of (t, y) and its standard error."""
    n = len(points)
    if n < 3:
        return 0.0, 0.0
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    if not sxx:
        return 0.0, 0.0
    b = sum((p[0] - mx) * (p[1] - my) for p in points) / sxx
    resid = sum((p[1] - my - b * (p[0] - mx)) ** 2 for p in points)
    return b, (resid / (n - 2) / sxx) ** 0.5


@dataclass
class Options:
    target: str = "engine"
    partitions: int = 6
    layout: Layout = field(default_factory=Layout)
    duration: float = 20.0
    drain: float = 10.0
    warmup: int = 60
    slope_limit: float = 0.02
    env: dict[str, str] = field(default_factory=dict)
    worker_script: str | None = None


def run_step(opts: Options, rate: float, *, profile_dir: Path | None = None,
             label: str = "") -> Step:
    tag = uuid.uuid4().hex[:8]
    base = Settings()
    settings = base.model_copy(update={"topic_prefix": f"bench.{tag}.",
                                       "default_partitions": opts.partitions})
    target = make_target(opts.target, opts.partitions, opts.worker_script)
    logdir = base.state_dir / "bench-engine" / tag
    logdir.mkdir(parents=True, exist_ok=True)
    step = Step(rate, opts.duration)
    groups = target.groups(settings)
    procs: list[Proc] = []
    spies: list[subprocess.Popen[bytes]] = []
    console.print(f"[dim]{label}{target.name} @ {rate:g}/s for {opts.duration:g}s "
                  f"(topics bench.{tag}.*)[/]")
    t_start = time.monotonic()
    try:
        target.setup(settings)
        procs = start_workers(target, settings, opts.layout, logdir, opts.env)
        wait_assigned(settings, groups, procs, timeout=90)
        observer = Observer(target, settings, opts.partitions)
        observer.start()
        starter = target.starter(settings)
        # warm-up: every partition sees executions (the orchestrator loads each partition on
        # its first input), all finished before the window opens
        for _ in range(opts.warmup):
            starter.send()
        starter.flush()
        deadline = time.monotonic() + 60
        while len(observer.done) < opts.warmup and time.monotonic() < deadline:
            time.sleep(0.05)
        if len(observer.done) < opts.warmup:
            raise RuntimeError(f"warm-up: {len(observer.done)}/{opts.warmup} finished in 60s")
        step.startup_s = time.monotonic() - t_start
        warm = len(observer.done)

        pids = {p.role: p.popen.pid for p in procs}
        bpid = broker_pid(settings)
        if bpid:
            pids["broker"] = bpid
        pids["bench (starter+observer)"] = os.getpid()
        meter = CpuMeter(pids)
        if profile_dir is not None:
            profile_dir.mkdir(parents=True, exist_ok=True)
            for p in procs:
                spies.append(subprocess.Popen(
                    ["py-spy", "record", "--pid", str(p.popen.pid), "--rate", "100",
                     "--duration", str(int(opts.duration)), "--nonblocking", "--format",
                     "raw", "-o", str(profile_dir / f"{p.role}.txt")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        sent: dict[str, float] = {}
        total = int(rate * opts.duration)
        meter.start()
        t0 = time.monotonic()
        next_sample = 0.0
        while True:
            now = time.monotonic() - t0
            if now >= opts.duration:
                break
            due = min(total, int(now * rate) + 1)
            while len(sent) < due:
                eid, ts = starter.send()
                sent[eid] = ts
            if now >= next_sample:
                step.samples.append((round(now, 2), len(sent), len(observer.done) - warm))
                next_sample += 0.25
            time.sleep(min(0.005, max(0.0005, (len(sent) / rate) - now)))
        t_stop = time.monotonic()
        step.sent = len(sent)
        step.send_rate = step.sent / (t_stop - t0)
        starter.flush()
        while time.monotonic() - t_stop < opts.drain:
            if sum(1 for e in sent if e in observer.done) >= step.sent:
                step.drain_s = time.monotonic() - t_stop
                break
            time.sleep(0.05)
        step.cpu = meter.stop()
        for s in spies:
            s.wait(30)
        starter.close()
        observer.stop()
        ends = [(sent[e], observer.done[e]) for e in sent if e in observer.done]
        step.finished = len(ends)
        step.failed = sum(1 for _, (ok, _, _) in ends if not ok) + getattr(starter, "failed", 0)
        lat = [(end - ts) * 1000 for ts, (_, end, _) in ends]
        seen = [(obs - ts) * 1000 for ts, (_, _, obs) in ends]
        step.lat_ms = {"p50": round(pct(lat, 0.50), 1), "p99": round(pct(lat, 0.99), 1),
                       "max": round(max(lat, default=float("nan")), 1)}
        step.seen_ms = {"p50": round(pct(seen, 0.50), 1), "p99": round(pct(seen, 0.99), 1)}
        tail = [(float(t), float(s - f)) for t, s, f in step.samples
                if t >= opts.duration / 4]
        step.slope, step.slope_se = slope(tail)
        reasons = []
        if step.sent < 0.98 * total or step.send_rate < 0.98 * rate:
            reasons.append(f"starter kept {step.send_rate:.0f}/s only")
        if step.slope > opts.slope_limit * rate and step.slope > 2 * step.slope_se:
            reasons.append(f"backlog grows {step.slope:.1f}±{step.slope_se:.1f}/s")
        if step.drain_s is None:
            reasons.append(f"{step.sent - step.finished} unfinished {opts.drain:g}s after stop")
        if step.failed:
            reasons.append(f"{step.failed} failed")
        step.sustainable = not reasons
        step.why = "; ".join(reasons)
        return step
    finally:
        for s in spies:
            if s.poll() is None:
                s.terminate()
        stop_workers(procs)
        dead = [p for p in procs if p.popen.returncode not in (0, -signal.SIGTERM)]
        for p in dead:
            console.print(f"[yellow]{p.role} exited {p.popen.returncode}; log {p.log}[/]")
        drop_everything(settings, list(groups))
        if not dead and step.sustainable:
            for f in logdir.iterdir():
                f.unlink()
            logdir.rmdir()


def show_step(step: Step) -> None:
    verdict = "[green]sustainable[/]" if step.sustainable else f"[red]no[/] ({step.why})"
    console.print(f"  sent {step.sent} ({step.send_rate:.0f}/s), finished {step.finished}, "
                  f"backlog slope {step.slope:+.1f}±{step.slope_se:.1f}/s, drained in "
                  f"{'—' if step.drain_s is None else f'{step.drain_s:.1f}s'}, latency p50 "
                  f"{step.lat_ms.get('p50')} p99 {step.lat_ms.get('p99')} ms: {verdict}")


# --- the profile ----------------------------------------------------------------------------

# the first frame from the leaf up that matches decides (py-spy frame text: "func (file:line)")
IDLE = ("EpollSelector.select", "selectors.py")
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("validation (pydantic)", ("pydantic", "to_model (", "from_avro (", "validate_dict (")),
    ("decode (Avro)", ("Codec.decode (", "Codec._decode (", "DecodeGuard.decode (", "fastavro")),
    ("encode (Avro)", ("Codec.encode (",)),
    ("ids (uuid5/uuid7)", ("uuid.py", "schemas/ids.py", "derived_id (")),
    ("wire mapping (dict ⇄ domain)", ("streams/wire.py",)),
    ("domain (decide / evolve)", ("aggregates/",)),
    ("definitions / task config", ("runtime/registry.py",)),
    ("tool runner (executors/)", ("streams/executors/",)),
    ("Kafka client (aiokafka)", ("aiokafka/", "kafka/")),
    ("logging", ("logging/",)),
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", choices=["engine", "raw"], default="engine")
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
    ap.add_argument("--timers", type=int, default=1)
    ap.add_argument("--executors", type=int, default=1)
    ap.add_argument("--all-in-one", type=int, default=0, metavar="N",
                    help="N processes with every role instead of one process per role")
    ap.add_argument("--profile", action="store_true",
                    help="py-spy record every worker for one window at the max rate")
    ap.add_argument("--profile-rate", type=float, help="profile at this rate (skips nothing)")
    ap.add_argument("--worker-script", metavar="FILE",
                    help="run this Python file instead of `-m flowlog.cli` for the workers "
                    "(same arguments): for trying a patched engine; implies --no-write")
    ap.add_argument("--no-write", action="store_true", help="print only, write no json")
    ap.add_argument("--env", action="append", default=[], metavar="K=V",
                    help="extra environment for the workers (e.g. FLOWLOG_PRODUCER_LINGER_MS=5)")
    args = ap.parse_args(argv)

    quick = args.quick
    opts = Options(
        target=args.target, partitions=args.partitions,
        layout=Layout(args.orchestrators, args.timers, args.executors, args.all_in_one),
        duration=args.duration or (8.0 if quick else 20.0),
        drain=args.drain or (5.0 if quick else 10.0),
        env=dict(kv.split("=", 1) for kv in args.env), worker_script=args.worker_script)
    if args.worker_script or args.env:
        args.no_write = True  # an experiment, not the engine's figure
    rates = ([float(r) for r in args.rates.split(",")] if args.rates
             else [float(r) for r in (QUICK_RATES if quick else DEFAULT_RATES)])
    refine = args.refine if args.refine is not None else (0 if quick else 1)
    latency_runs = args.latency_runs if args.latency_runs is not None else (1 if quick else 3)
    target = make_target(args.target, args.partitions)
    load = os.getloadavg()
    console.print(f"[bold]{target.description}[/]: {opts.layout.label()}, "
                  f"{opts.partitions} partitions, {os.cpu_count()} CPUs, load before "
                  f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    t_begin = time.monotonic()

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
        step = run_step(opts, rate, profile_dir=pdir, label="profile: ")
        show_step(step)
        profile = {"rate": rate, "step": step.summary(), "roles": {}}
        for f in sorted(pdir.glob("*.txt")):
            profile["roles"][f.stem] = summarize_profile(f, opts.duration)
        show_profile(profile)

    figures: dict[str, Any] = {
        "target": target.description, "layout": opts.layout.label(),
        "partitions": opts.partitions, "window_s": opts.duration, "drain_s": opts.drain,
        "slope_limit_of_rate": opts.slope_limit, "records_per_execution": RECORDS_PER_EXECUTION,
        "load_before": [round(x, 2) for x in load],
        "load_after": [round(x, 2) for x in os.getloadavg()],
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
        name = "engine" if args.target == "engine" else "engine-raw-pingpong"
        console.print(f"written to {write_results(name, figures)}")
        if profile:
            pname = "engine-profile" if args.target == "engine" else "engine-raw-profile"
            console.print(f"written to {write_results(pname, profile)}")


def show_profile(profile: dict[str, Any]) -> None:
    table = Table("role", "busy (% core)", "where the time goes (% of busy samples)",
                  title=f"profile at {profile['rate']:g}/s (py-spy, 100 Hz)")
    for role, p in profile["roles"].items():
        shares = ", ".join(f"{k} {v}" for k, v in p["share_percent"].items())
        table.add_row(role, f"{p['busy_percent_of_core']}", shares)
    console.print(table)


def _short(name: str) -> str:
    role, _, index = name.partition("-")
    short = {"orchestrator": "orch", "timers": "tim", "executor": "exe", "all": "all",
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
