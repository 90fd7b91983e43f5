"""The audit tooling's two goals (issue 10): `audit --at` on a 1,000-event execution from
the store (goal ≤ 50 ms), and what-if over 10,000 recorded executions on one core (goal
≥ 2,000 executions/s).

    python benchmarks/bench_audit.py [--runs 5] [--executions 10000] [--at-samples 200]

`--at`: a batch-loop execution of ~1,000 events is written to a fresh audit store schema
through the projector's own code (`Projector.apply`, one record per decision, snapshots
every `FLOWLOG_AUDIT_SNAPSHOT_EVERY` = 100 events), and a copy without snapshots; then
`operations.state(store, id, SEQ)` (what `flowlog audit ID --at SEQ` runs after start-up:
resolve the seq, newest snapshot at or before it, the events after it, fold) at random
seqs. Also the cold figure: a new store (connection pool) plus one call.

what-if: 10,000 executions of four examples (support-triage, bench-5node, batch-loop,
fan-out-fan-in), recorded in memory by driving `decide` with scripted node results, then
`replay.what_if_many` with a changed support-triage switch and with the unchanged
definitions, in this one process (one core). Also the same over 500 executions read from
the store (the PostgreSQL reads included).

Each figure is the median of `--runs` runs. Needs PostgreSQL (`flowlog up`). Writes
benchmarks/results/audit.json.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from _common import write_results
from flowlog.aggregates.definition import compile_definition, load_definition, parse_definition
from flowlog.aggregates.definition.compiled import CompiledDefinition
from flowlog.aggregates.execution import ExecutionState, decide, evolve
from flowlog.aggregates.execution import inputs as I
from flowlog.aggregates.execution.events import ExecutionEvent
from flowlog.aggregates.records import batch_record
from flowlog.projections.audit import operations as ops
from flowlog.projections.audit import replay
from flowlog.projections.audit.projector import Projector
from flowlog.projections.audit.steps import recorded_steps
from flowlog.projections.audit.store import AuditStore
from flowlog.schemas.codec import Codec
from flowlog.schemas.guard import DecodeGuard

from flowlog.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
OUTPUTS: dict[str, Any] = {"classify": {"category": "billing", "customer_id": "C-1"},
                           "refund_check": {"eligible": True}, "draft": {"text": "hi"}}


def example(name: str) -> CompiledDefinition:
    return compile_definition(load_definition(EXAMPLES / f"{name}.yaml"))


def drive(d: CompiledDefinition, execution_id: str, payload: dict[str, Any]
          ) -> list[ExecutionEvent]:
    """One execution: succeed every scheduled task, fire timers when nothing else runs."""
    state, events, now, n = ExecutionState(), [], T0, 0

    def send(inp: I.Input) -> None:
        for e in decide(state, inp, now, d):
            evolve(state, e)
            events.append(e)

    send(I.TriggerReceived(event_id=f"{execution_id}:t", execution_id=execution_id,
                           workflow_id=d.workflow_id, workflow_version=d.version,
                           input=payload))
    while state.phase == "active" and n < 100_000:
        scheduled = sorted(k for k, r in state.nodes.items() if r.status == "scheduled")
        if scheduled:
            for node_id in scheduled:
                n += 1
                now += timedelta(milliseconds=3)
                base = node_id.split("[")[0]
                send(I.NodeResultReported(
                    event_id=f"{execution_id}:r{n}", node_id=node_id,
                    attempt=state.nodes[node_id].attempt, status="succeeded",
                    output=OUTPUTS.get(base, {"ok": True, "price": 1.5})))
        elif state.timers:
            timer_id, (kind, node_id, attempt, due) = min(state.timers.items(),
                                                          key=lambda kv: kv[1][3])
            now = max(now, datetime.fromisoformat(due))
            n += 1
            send(I.TimerFired(event_id=f"{execution_id}:f{n}", timer_id=timer_id, kind=kind,
                              node_id=node_id, attempt=attempt))
        else:
            break
    return events


@dataclass
class Msg:
    """What the projector reads off a Kafka record."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: list[Any]


class _NoSink:
    def send(self, key: bytes | None, value: bytes) -> None:
        raise AssertionError("nothing should be quarantined here")

    def flush(self, timeout: float = 30.0) -> None:
        pass


def store_events(settings: Settings, store: AuditStore, histories: list[list[ExecutionEvent]],
                 snapshot_every: int, topic: str) -> None:
    codec = Codec.from_settings(settings)
    s = settings.model_copy(update={"audit_snapshot_every": snapshot_every})
    projector = Projector(s, store, DecodeGuard(codec, _NoSink(), validate=False))
    msgs, offset = [], 0
    for events in histories:
        groups: list[list[ExecutionEvent]] = []
        for e in events:
            if groups and groups[-1][0].causation_id == e.causation_id:
                groups[-1].append(e)
            else:
                groups.append([e])
        for g in groups:
            value = codec.encode("ExecutionEventBatch", batch_record(g, g[0].causation_id))
            msgs.append(Msg(topic, 0, offset, g[0].execution_id.encode(), value, []))
            offset += 1
    for i in range(0, len(msgs), 500):
        projector.apply(topic, 0, msgs[i:i + 500])


def bench_at(settings: Settings, schema: str, runs: int, samples: int) -> dict[str, Any]:
    loop = example("batch-loop")
    records = [f"r{i}" for i in range(330)]  # ~1,000 events
    events = drive(loop, "long-1", {"records": records})
    plain = drive(loop, "long-plain", {"records": records})
    store = AuditStore(settings, schema)
    store_events(settings, store, [events], snapshot_every=100, topic="long")
    store_events(settings, store, [plain], snapshot_every=10**9, topic="plain")
    n = len(events)
    rnd = random.Random(1)
    out: dict[str, Any] = {"events": n}
    for label, eid in (("with_snapshots", "long-1"), ("without_snapshots", "long-plain")):
        medians, p95s = [], []
        for _ in range(runs):
            times = []
            for _ in range(samples):
                k = rnd.randint(1, n)
                t = time.perf_counter()
                view = ops.state(store, eid, str(k))
                times.append((time.perf_counter() - t) * 1000)
                assert view["seq"] == k
            medians.append(statistics.median(times))
            p95s.append(sorted(times)[int(0.95 * len(times))])
        out[label] = {"median_ms": round(statistics.median(medians), 2),
                      "p95_ms": round(statistics.median(p95s), 2)}
    cold = []
    for _ in range(runs):
        t = time.perf_counter()
        fresh = AuditStore(settings, schema, readonly=True)
        ops.state(fresh, "long-1", str(n - 1))
        cold.append((time.perf_counter() - t) * 1000)
        fresh.close()
    out["cold_with_store_open_ms"] = round(statistics.median(cold), 2)
    store.close()
    return out


def recorded(total: int) -> tuple[list[tuple[str, list[ExecutionEvent]]],
                                   dict[str, CompiledDefinition]]:
    defs = {name: example(name) for name in ("support-triage", "bench-5node", "batch-loop",
                                             "fan-out-fan-in")}
    payloads = {"support-triage": {"ticket": {"id": "T", "subject": "s", "body": "b"}},
                "bench-5node": {}, "batch-loop": {"records": ["a", "b", "c"]},
                "fan-out-fan-in": {"symbol": "ACME"}}
    names = list(defs)
    histories = []
    for i in range(total):
        name = names[i % len(names)]
        eid = f"{name}-{i}"
        histories.append((eid, drive(defs[name], eid, payloads[name])))
    return histories, defs


def edited(d: CompiledDefinition, node_id: str, change: dict[str, Any]) -> CompiledDefinition:
    raw = copy.deepcopy(d.spec.raw)
    raw["nodes"][node_id].update(change)
    raw["version"] = d.version + 1
    return compile_definition(parse_definition(raw))


def changed_switch(d: CompiledDefinition) -> CompiledDefinition:
    return edited(d, "route", {"cases": {"billing": ["file_issue"], "bug": ["refund_check"]}})


# one change per workflow late in the DAG (what a what-if usually asks), and one at its root
DOWNSTREAM = {
    "support-triage": ("route", {"cases": {"billing": ["file_issue"], "bug": ["refund_check"]}}),
    "bench-5node": ("E", {"retry": {"max_attempts": 2}}),
    "batch-loop": ("accumulate", {"max_iterations": 30}),
    "fan-out-fan-in": ("report", {"output": {"count": "size(nodes.quotes.output)"}}),
}
AT_ROOT = {
    "support-triage": ("classify", {"retry": {"max_attempts": 4}}),
    "bench-5node": ("A", {"retry": {"max_attempts": 2}}),
    "batch-loop": ("enrich", {"max_concurrency": 3}),
    "fan-out-fan-in": ("start", {"output": '{"symbol": inputs.symbol, "v": 2}'}),
}


def bench_what_if(total: int, runs: int) -> dict[str, Any]:
    histories, defs = recorded(total)
    events_total = sum(len(e) for _, e in histories)
    by_wf: dict[str, list[tuple[str, list[ExecutionEvent]]]] = {}
    for eid, events in histories:
        by_wf.setdefault(events[0].workflow_id, []).append((eid, events))
    out: dict[str, Any] = {"executions": total, "events": events_total}
    # the floor: today's decide alone on the same recorded inputs (no rebuild, no report)
    steps = [(defs[ev[0].workflow_id], recorded_steps(ev)) for _, ev in histories]
    floor = []
    for _ in range(runs):
        t = time.perf_counter()
        for d, st in steps:
            state = ExecutionState()
            for step in st:
                if step.input is not None:
                    for e in decide(state, step.input, step.at, d):
                        evolve(state, e)
        floor.append(total / (time.perf_counter() - t))
    out["decide_only"] = {"executions_per_s": round(statistics.median(floor))}
    cases = {
        "changed_downstream": ({w: edited(defs[w], *DOWNSTREAM[w]) for w in defs}, True),
        "changed_at_root": ({w: edited(defs[w], *AT_ROOT[w]) for w in defs}, True),
        "unchanged": (defs, True),
        "changed_downstream_no_prefix_skip": (
            {w: edited(defs[w], *DOWNSTREAM[w]) for w in defs}, False),
    }
    for label, (targets, skip) in cases.items():
        rates = []
        changed = 0
        for _ in range(runs):
            t = time.perf_counter()
            done = changed = 0
            for wf, items in by_wf.items():
                for _eid, events in items:
                    report = replay.what_if(events, targets[wf], defs[wf], skip_unchanged=skip)
                    changed += report.changed
                    done += 1
            rates.append(done / (time.perf_counter() - t))
        out[label] = {"executions_per_s": round(statistics.median(rates)),
                      "runs": [round(r) for r in rates], "changed": changed}
    return out


def bench_what_if_from_store(settings: Settings, schema: str, runs: int) -> dict[str, Any]:
    histories, defs = recorded(500)
    triage = [(eid, ev) for eid, ev in histories if ev[0].workflow_id == "support-triage"]
    store = AuditStore(settings, schema)
    store_events(settings, store, [ev for _, ev in triage], snapshot_every=100,
                 topic="triage")
    target = changed_switch(defs["support-triage"])
    rates = []
    for _ in range(runs):
        t = time.perf_counter()
        summary = ops.what_if_batch(store, "support-triage", None, target,
                                    type("D", (), {"get": lambda self, w, v: defs[w]})())
        rates.append(summary.total / (time.perf_counter() - t))
    store.close()
    return {"executions": len(triage), "executions_per_s": round(statistics.median(rates))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--at-samples", type=int, default=200)
    args = parser.parse_args()
    settings = Settings()
    schema = f"bench_audit_{uuid.uuid4().hex[:8]}"
    figures: dict[str, Any] = {}
    try:
        figures["audit_at"] = bench_at(settings, schema, args.runs, args.at_samples)
        print(f"audit --at on a {figures['audit_at']['events']}-event execution: "
              f"{figures['audit_at']}")
        figures["what_if"] = bench_what_if(args.executions, args.runs)
        print(f"what-if over {args.executions} executions (one core): {figures['what_if']}")
        figures["what_if_from_store"] = bench_what_if_from_store(settings, schema, args.runs)
        print(f"what-if read from the store: {figures['what_if_from_store']}")
    finally:
        with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    figures["goals"] = {
        "audit_at_ms": 50,
        "audit_at_met": figures["audit_at"]["with_snapshots"]["median_ms"] <= 50,
        "what_if_per_s": 2000,
        "what_if_met": figures["what_if"]["changed_downstream"]["executions_per_s"] >= 2000,
    }
    print(f"goals: {figures['goals']}")
    print(f"wrote {write_results('audit', figures)}")


if __name__ == "__main__":
    main()
