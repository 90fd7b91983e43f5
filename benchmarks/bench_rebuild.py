"""Rebuild after a restart: how long until a role that owns execution partitions holding
millions of events decides its first new input.

    python benchmarks/bench_rebuild.py [--events 5000000] [--partitions 6]
                                       [--roles processor,orchestrator] [--keep]

1. Fixture: fresh topics under a new prefix; the 5-node no-op DAG applied; ``--events``
   execution events written to ``execution-events`` as the orchestrator writes them (one
   `ExecutionEventBatch` per decision, keyed by execution id, murmur2 as the SDK). The
   history of one execution is decided once by the pure aggregate (``decide``/``evolve``),
   encoded once, and then copied per execution with every uuid replaced by a fresh one
   (same length, so the Avro bytes stay valid); every execution is finished.
2. Per role, twice in a row (``cold``: the first start on the fixture; ``warm``: the next
   start, after the first one stopped): start `flowlog worker ROLE` alone, wait until its
   consumer group is stable, publish one trigger, and time the first decision for it (its
   `ExecutionEventBatch` on execution-events, read committed) from the process start and
   from the trigger. The `processor` reads its last snapshot plus the tail (it writes a
   snapshot after a long rebuild, so the warm start has one); the `orchestrator` (today's
   roles) reads the whole partition at every start.

Prints the figures and writes benchmarks/results/rebuild.json. Needs `make up`. Topics are
deleted at the end unless ``--keep``. RSS of the role after its rebuild is reported too.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import write_results
from _engine_harness import drop_everything, rss_mb
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from flowlog.settings import REPO_ROOT, Settings

DAG = REPO_ROOT / "examples" / "bench-5node.yaml"
UUID_RE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def template(codec: Any) -> tuple[list[bytes], bytes]:
    """The encoded batches of one finished execution of the 5-node DAG, in order, and its
    retired state as the processor keeps it (JSON). The history is
    `histories.succeeding_history`, the one the rebuild's unit tests use."""
    import orjson
    import yaml
    from flowlog.aggregates import records
    from flowlog.aggregates.definition import compile_definition, parse_definition
    from flowlog.streams.runtime.histories import succeeding_history

    raw = yaml.safe_load(DAG.read_text())
    d = compile_definition(parse_definition({**raw, "version": 1}))
    history = succeeding_history(d, execution_id=str(uuid.uuid4()), start=datetime.now(UTC),
                                 new_id=lambda: str(uuid.uuid4()),
                                 step=timedelta(milliseconds=3), output={"ok": True})
    state = history.state
    assert state.phase == "succeeded", state.phase
    out = [codec.encode("ExecutionEventBatch", records.batch_record(x.events, x.input_id))
           for x in history.decisions]
    return out, orjson.dumps(state.retired().to_dict())


def write_fixture(settings: Settings, events_total: int, window: int,
                  snapshots: bool) -> dict[str, Any]:
    import orjson
    from aiokafka.partitioner import murmur2
    from confluent_kafka import Producer
    from flowlog.schemas.codec import Codec
    from flowlog.streams.runtime.processor import (
        encode_snapshot,
        ensure_snapshots_topic,
        snapshots_topic,
    )
    from flowlog.streams.runtime.processor_state import PartitionState

    codec = Codec()
    batches, retired = template(codec)
    parts = settings.default_partitions
    # the last `window` finished executions of each partition, as the processor keeps them
    kept: list[deque[bytes]] = [deque(maxlen=window) for _ in range(parts)]
    written = [0] * parts
    per_execution = sum(len(codec.decode(b).record["events"]) for b in batches)
    executions = max(1, events_total // per_execution)
    ids = sorted({m for b in batches for m in UUID_RE.findall(b)})
    exec_id = codec.decode(batches[0]).record["execution_id"].encode()
    topic = settings.topic_prefix + "execution-events"
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers,
                         "partitioner": "murmur2_random", "linger.ms": 20,
                         "batch.num.messages": 10000, "compression.type": "lz4",
                         "enable.idempotence": True, "acks": "all",
                         "queue.buffering.max.messages": 500000})
    started = time.perf_counter()
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task("writing executions", total=executions)
        for n in range(executions):
            fresh = {old: str(uuid.uuid4()).encode() for old in ids}

            def renamed(m: re.Match[bytes], f: dict[bytes, bytes] = fresh) -> bytes:
                return f[m.group(0)]

            key = fresh[exec_id]
            part = (murmur2(key) & 0x7FFFFFFF) % parts
            written[part] += 1
            if snapshots:
                kept[part].append(UUID_RE.sub(renamed, retired))
            for b in batches:
                value = UUID_RE.sub(renamed, b)
                while True:
                    try:
                        producer.produce(topic, value=value, key=key)
                        break
                    except BufferError:
                        producer.poll(0.05)
            producer.poll(0)
            if n % 1000 == 0:
                bar.update(task, completed=n)
        bar.update(task, completed=executions)
    left = producer.flush(120)
    if left:
        raise SystemExit(f"{left} fixture records not delivered")
    seconds = time.perf_counter() - started
    out = {"executions": executions, "events": executions * per_execution,
           "events_per_execution": per_execution,
           "records": executions * len(batches), "write_s": round(seconds, 1)}
    if snapshots:
        # what the processor would have snapshotted after folding this history: the same
        # PartitionState, built from the retired states instead of by replaying every event
        from confluent_kafka import Consumer, TopicPartition

        ensure_snapshots_topic(settings)
        probe = Consumer({"bootstrap.servers": settings.bootstrap_servers,
                          "group.id": "bench-rebuild-probe"})
        snaps = Producer({"bootstrap.servers": settings.bootstrap_servers,
                          "message.max.bytes": 64 * 1024 * 1024})
        sizes = []
        for p in range(parts):
            _, high = probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            states = [orjson.loads(b) for b in kept[p]]
            state = PartitionState.from_snapshot({
                "v": 1, "partition": p, "events_offset": high, "states": states,
                "finished": [d["execution_id"] for d in states], "items": {},
                "limited": [], "evicted": written[p] - len(states)}, window)
            value = encode_snapshot(state)
            sizes.append(len(value))
            snaps.produce(snapshots_topic(settings), value=value, key=str(p).encode(),
                          partition=p)
        probe.close()
        if snaps.flush(60):
            raise SystemExit("fixture snapshots not delivered")
        out["snapshot_bytes_max"] = max(sizes)
    return out


def group_stable(settings: Settings, group: str, timeout: float) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            desc = admin.describe_consumer_groups([group])[group].result(10)
            if str(desc.state).endswith("STABLE") and desc.members and all(
                    m.assignment.topic_partitions for m in desc.members):
                return True
        except Exception:
            pass
        time.sleep(0.05)
    return False


def one_start(settings: Settings, role: str, logdir: Path, label: str,
              env_extra: dict[str, str]) -> dict[str, Any]:
    from confluent_kafka import Consumer, TopicPartition
    from flowlog.schemas.codec import Codec
    from flowlog.schemas.events import TriggerReceived
    from flowlog.schemas.sdk import EventProducer

    codec = Codec()
    topic = settings.topic_prefix + "execution-events"
    watcher = Consumer({"bootstrap.servers": settings.bootstrap_servers,
                        "group.id": f"bench-rebuild-{uuid.uuid4().hex[:6]}",
                        "isolation.level": "read_committed", "enable.auto.commit": False})
    meta = watcher.list_topics(topic, timeout=10).topics[topic]
    tps = []
    for p in meta.partitions:
        _, high = watcher.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        tps.append(TopicPartition(topic, p, high))
    watcher.assign(tps)
    env = {**os.environ, "FLOWLOG_TOPIC_PREFIX": settings.topic_prefix,
           "FLOWLOG_DEFAULT_PARTITIONS": str(settings.default_partitions), **env_extra}
    log = logdir / f"{role}-{label}.log"
    t_start = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flowlog.cli", "worker", role,
                                 "-l", "info"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=REPO_ROOT)
    result: dict[str, Any] = {"role": role, "start": label}
    try:
        group = settings.topic_prefix + role
        stable = group_stable(settings, group, 600)
        result["group_stable_s"] = round(time.monotonic() - t_start, 2) if stable else None
        producer = EventProducer.from_settings(settings)
        trigger = TriggerReceived(workflow_id="bench-5node", workflow_version=0,
                                  source="manual", input={})
        t_trigger = time.monotonic()
        producer.publish(trigger)
        producer.flush(30)
        producer.close(30)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            msg = watcher.poll(0.2)
            if msg is None or msg.error():
                if proc.poll() is not None:
                    raise SystemExit(f"{role} ended with {proc.returncode}; see {log}")
                continue
            if codec.decode(msg.value()).record["execution_id"] == trigger.execution_id:
                now = time.monotonic()
                result["first_decision_from_start_s"] = round(now - t_start, 2)
                result["first_decision_from_trigger_s"] = round(now - t_trigger, 2)
                break
        result["rss_mb"] = rss_mb(proc.pid)
    finally:
        watcher.close()
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    ready = re.findall(rb"ready in ([0-9.]+) s", log.read_bytes())
    if ready:
        result["partition_ready_s_max"] = max(float(x) for x in ready)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=5_000_000,
                    help="execution events in the fixture (default 5,000,000)")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--roles", default="processor,orchestrator",
                    help="roles to time, comma-separated (processor, orchestrator; none: only "
                         "write the fixture, e.g. with --keep)")
    ap.add_argument("--prefix", default=None,
                    help="reuse a fixture written before under this prefix (with --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the topics at the end")
    ap.add_argument("--fixture-snapshots", action="store_true",
                    help="also write the processor snapshot of the fixture (the state the "
                         "processor would have snapshotted after folding it), so even the "
                         "first processor start reads snapshot + tail: without it, the "
                         "first (cold) start replays every event")
    args = ap.parse_args()

    from flowlog.streams.runtime.kafka import ensure_topics
    from flowlog.streams.runtime.tools import apply_definition

    prefix = args.prefix or f"bench.rebuild.{uuid.uuid4().hex[:8]}."
    settings = Settings(topic_prefix=prefix, default_partitions=args.partitions)
    figures: dict[str, Any] = {"prefix": prefix, "partitions": args.partitions,
                               "load_before": [round(x, 2) for x in os.getloadavg()]}
    logdir = Path(f"/tmp/bench-rebuild-{uuid.uuid4().hex[:6]}")
    logdir.mkdir(parents=True)
    try:
        if args.prefix is None:
            ensure_topics(settings)
            apply_definition(settings, DAG)
            figures["fixture"] = write_fixture(settings, args.events,
                                               settings.finished_window,
                                               args.fixture_snapshots)
            print(f"fixture: {figures['fixture']}")
        runs = []
        for role in [r for r in args.roles.split(",") if r and r != "none"]:
            for label in ("cold", "warm"):
                r = one_start(settings, role, logdir, label, {})
                print(r)
                runs.append(r)
        figures["runs"] = runs
    finally:
        figures["load_after"] = [round(x, 2) for x in os.getloadavg()]
        figures["logs"] = str(logdir)
        if not args.keep:
            drop_everything(settings, [prefix + r for r in args.roles.split(",")])
    print(f"written to {write_results('rebuild', figures)}")


if __name__ == "__main__":
    main()
