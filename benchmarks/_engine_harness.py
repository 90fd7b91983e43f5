"""The engine benchmark's harness: one step is one rate on fresh topics and fresh worker
processes (see bench_engine.py and docs/benchmarks.md for the method). Targets: the engine
(`EngineTarget`) and the raw aiokafka ping-pong (`bench_raw_pingpong.RawTarget`)."""

from __future__ import annotations

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

from rich.console import Console

from flowlog.settings import REPO_ROOT, Settings

console = Console(highlight=False)
if not console.is_terminal:
    console.width = 160
DAG = REPO_ROOT / "examples" / "bench-5node.yaml"
WORKFLOW = "bench-5node"
TERMINAL = {"ExecutionSucceeded": True, "ExecutionFailed": False,
            "ExecutionCancelled": False, "ExecutionRejected": False}


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

    def __init__(self, partitions: int, worker_script: str | None = None,
                 processor: bool = False) -> None:
        from flowlog.schemas.codec import Codec

        self.partitions = partitions
        self.processor = processor  # the `processor` role instead of orchestrator + timers
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
        if self.processor:
            return {prefix + "processor": 4 * p, prefix + "executor": p}
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


def make_target(name: str, partitions: int, worker_script: str | None = None,
                processor: bool = False) -> Target:
    if name == "raw":
        from bench_raw_pingpong import RawTarget

        return RawTarget(partitions)
    if name == "faust":
        from bench_faust_pingpong import FaustTarget

        return FaustTarget(partitions)
    return EngineTarget(partitions, worker_script, processor)


# --- processes, groups, CPU -----------------------------------------------------------------

@dataclass
class Layout:
    orchestrators: int = 1
    timers: int = 1
    executors: int = 1
    all_in_one: int = 0  # processes running every role (instead of the split above)
    processors: int = 0  # `processor` processes instead of orchestrators and timers

    def roles(self) -> list[str]:
        if self.all_in_one:
            return ["all"] * self.all_in_one
        if self.processors:
            return ["processor"] * self.processors + ["executor"] * self.executors
        return (["orchestrator"] * self.orchestrators + ["dispatcher"] * self.timers
                + ["executor"] * self.executors)

    def label(self) -> str:
        if self.all_in_one:
            return f"{self.all_in_one}× all roles"
        if self.processors:
            return f"{self.processors} processor, {self.executors} executor"
        return (f"{self.orchestrators} orchestrator, {self.timers} dispatcher, "
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


ENGINE_TOPICS = ("triggers", "commands", "node-tasks", "node-results", "timers",
                 "execution-events")


def log_offsets(settings: Settings, partitions: int) -> int:
    """Offsets taken on the engine's topics: records plus transaction markers (a marker
    is a record the broker writes and every reader skips)."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    c = Consumer({"bootstrap.servers": settings.bootstrap_servers,
                  "group.id": f"bench-offsets-{uuid.uuid4().hex[:8]}"})
    try:
        total = 0
        for base in ENGINE_TOPICS:
            for p in range(partitions):
                try:
                    lo, hi = c.get_watermark_offsets(
                        TopicPartition(settings.topic_prefix + base, p), timeout=10)
                except KafkaException as exc:  # a target that does not use this topic
                    if exc.args[0].code() != KafkaError._UNKNOWN_PARTITION:
                        raise
                    continue
                total += hi - lo
        return total
    finally:
        c.close()


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


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


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
    log_offsets: int = 0  # offsets taken on the engine's topics (records + txn markers)
    executions: int = 0  # every execution of the step (warm-up included)
    startup_s: float = 0.0
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    # (seconds into the window, executions finished, RSS MB per role), every rss_every_s
    rss: list[tuple[float, int, dict[str, float]]] = field(default_factory=list)
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
            "cpu_percent_of_core": self.cpu,
            "cpu_ms_per_execution": {k: round(v * 10 / self.rate, 3)
                                     for k, v in self.cpu.items()},
            "log_offsets_per_execution": round(self.log_offsets / self.executions, 2)
            if self.executions else None,
            "startup_s": round(self.startup_s, 1),
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
    rss_every_s: float = 0.0  # > 0: sample every worker's RSS this often (Step.rss)


def run_step(opts: Options, rate: float, *, profile_dir: Path | None = None,
             label: str = "") -> Step:
    tag = uuid.uuid4().hex[:8]
    base = Settings()
    settings = base.model_copy(update={"topic_prefix": f"bench.{tag}.",
                                       "default_partitions": opts.partitions})
    target = make_target(opts.target, opts.partitions, opts.worker_script,
                         processor=opts.layout.processors > 0)
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
        next_rss = 0.0
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
            if opts.rss_every_s > 0 and now >= next_rss:
                step.rss.append((round(now, 1), len(observer.done) - warm,
                                 {p.role: rss_mb(p.popen.pid) for p in procs}))
                next_rss += opts.rss_every_s
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
        step.executions = warm + step.sent
        step.log_offsets = log_offsets(settings, opts.partitions)
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
                  f"{step.lat_ms.get('p50')} p99 {step.lat_ms.get('p99')} ms (observed "
                  f"{step.seen_ms.get('p50')}/{step.seen_ms.get('p99')}): {verdict}")
    summary = step.summary()
    console.print(f"  log offsets per execution {summary['log_offsets_per_execution']}, "
                  f"CPU ms per execution {summary['cpu_ms_per_execution']}")
