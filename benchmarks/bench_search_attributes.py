"""Search attributes: backfill and live-queue throughput, and where the time goes.

    python benchmarks/bench_search_attributes.py [--executions 2000] [--runs 3] [--batch 200]

1. Fixture: a fresh PostgreSQL schema (migrated), ``--executions`` executions (the four
   recorded histories in turn, 15-26 events each, two tenants) written with the projections'
   own code: the read model's `write` and the audit projector's `apply` (the audit store is
   where the backfill reads events).
2. Per run: declare an attribute, run `search_attributes_store.backfill` to `ready`, time it
   (executions/s); remove it. Two expressions: ``execution.cost_usd`` (double) and
   ``events.filter(e, e.type == "NodeRetryScheduled").size()`` (int).
3. Live queue: every execution queued, both attributes declared, `drain_pending` until the
   queue is empty (executions/s, two attributes each).
4. Split of one pass over every execution: reading its events from the audit store, versus
   building the activation and evaluating both expressions.

Medians of ``--runs``. Prints the figures, writes benchmarks/results/search_attributes.json.
Needs `make up` (PostgreSQL; Kafka for the audit projector's quarantine client).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from _common import median, write_results
from flowlog.projections import search_attributes as sa
from flowlog.projections import search_attributes_store as store
from flowlog.projections.migrate import migrate
from rich.console import Console

from flowlog.settings import Settings
from tests.integration.api.conftest import (
    TEMPLATES,
    Loader,
    decisions,
    history,
    template,
)

ATTRS = {"cost": ("double", "execution.cost_usd"),
         "retries": ("int", 'events.filter(e, e.type == "NodeRetryScheduled").size()')}


async def load(settings: Settings, schema: str, n: int) -> Loader:
    loader = await Loader(settings, schema).start()
    at = template(TEMPLATES[0])[0][0].occurred_at - timedelta(days=1)
    for name in TEMPLATES:
        await loader.define(template(name)[1], at)
    batch: list[list[Any]] = []
    for i in range(n):
        batch += decisions(history(TEMPLATES[i % 4], f"b{i:06d}", f"t{i % 2}",
                                   timedelta(seconds=i)))
        if len(batch) >= 500 or i == n - 1:
            await loader.apply(batch, publish=False)
            batch = []
    return loader


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--executions", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=200)
    args = ap.parse_args()
    out = Console()
    settings = Settings(topic_prefix=f"bsa{uuid.uuid4().hex[:8]}.")
    schema = f"bench_sa_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(settings.pg_dsn, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    settings = settings.model_copy(update={"pg_schema": schema})
    try:
        migrate(settings, schema)
        began = time.perf_counter()
        loader = asyncio.run(load(settings, schema, args.executions))
        out.print(f"fixture: {args.executions:,} executions in "
                  f"{time.perf_counter() - began:.1f}s")
        events_of = store.audit_source(loader.audit.store)
        conn = store.connect(settings.pg_dsn, schema)
        figures: dict[str, object] = {"executions": args.executions, "batch": args.batch,
                                      "runs": args.runs}
        for name, (type_, source) in ATTRS.items():
            rates = []
            for _ in range(args.runs):
                store.declare(conn, sa.declaration(name, type_, source))
                t0 = time.perf_counter()
                row = store.backfill(conn, events_of, name, args.batch)
                rates.append(row.done / (time.perf_counter() - t0))
                assert row.state == "ready" and row.done == args.executions, row
                store.remove(conn, name)
            figures[f"backfill_{name}_executions_per_s"] = median(rates)
            out.print(f"backfill {name} ({source}): {median(rates):,.0f} executions/s "
                      f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})")
        for name, (type_, source) in ATTRS.items():
            store.declare(conn, sa.declaration(name, type_, source))
            store.backfill(conn, events_of, name, args.batch)
        rates = []
        for _ in range(args.runs):
            conn.execute("INSERT INTO search_attribute_pending (execution_id, last_seq) "
                         "SELECT execution_id, last_seq FROM workflow_executions")
            t0 = time.perf_counter()
            done = 0
            while True:
                d, _w = store.drain_pending(conn, events_of, args.batch)
                if not d:
                    break
                done += d
            rates.append(done / (time.perf_counter() - t0))
        figures["live_drain_executions_per_s_two_attributes"] = median(rates)
        out.print(f"live queue, two attributes: {median(rates):,.0f} executions/s "
                  f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})")
        ids = [r[0] for r in conn.execute("SELECT execution_id FROM workflow_executions")]
        decls = store.declarations(conn)
        t0 = time.perf_counter()
        histories = []
        for k in range(0, len(ids), args.batch):
            got = events_of(ids[k:k + args.batch])
            histories += [got[e] for e in ids[k:k + args.batch]]
        read_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for eid, h in zip(ids, histories, strict=True):
            store.evaluate_rows(decls, eid, h)
        eval_s = time.perf_counter() - t0
        figures["split_read_events_ms_per_execution"] = 1000 * read_s / len(ids)
        figures["split_evaluate_two_ms_per_execution"] = 1000 * eval_s / len(ids)
        out.print(f"per execution: reading its events from the audit store "
                  f"{1000 * read_s / len(ids):.2f} ms, activation + two evaluations "
                  f"{1000 * eval_s / len(ids):.2f} ms")
        conn.close()
        asyncio.run(loader.close())
        path = write_results("search_attributes", figures)
        out.print(f"wrote {path}")
    finally:
        with psycopg.connect(settings.pg_dsn, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
