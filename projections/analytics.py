"""The analytics projector (psycopg, COPY): execution, node-run and LLM-call facts from
`execution-events`, and the per-minute rollups.

It runs the same fold as the read model; its state between batches is its own facts
tables (they keep every column the fold reads: phase, node status, incidents, counters,
times), so it needs nothing from the read model and can be rebuilt on its own. Each batch
COPYs the changed facts into session temp tables and merges them (seq-guarded), marks the
minutes it touched dirty, and stores its offsets: one transaction.

Rollups (plain PostgreSQL form): `run_rollups` recomputes the dirty minutes'
`rollup_*_1m` rows (`date_bin`, `percentile_cont`) in one transaction; `rollup_loop` runs
it every `FLOWLOG_ROLLUP_INTERVAL_S` in the projector process. With TimescaleDB the
rollups are continuous aggregates and `run_rollups` only empties the dirty queue.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any, ClassVar

import psycopg
from aiokafka import TopicPartition
from flowlog.aggregates.execution import events as ev
from flowlog.projections.fold import (
    EXECUTION_COLUMNS,
    LLM_CALL_COLUMNS,
    NODE_RUN_COLUMNS,
    Row,
    Rows,
)
from flowlog.projections.live import StatusChange
from flowlog.projections.readmodel import ReadModelProjector, Work, row_of, touched
from flowlog.projections.runner import Outcome
from flowlog.projections.sql import (
    LOCK_OFFSETS_PG,
    MARK_DIRTY,
    READ_OFFSETS_PG,
    ROLLUP_STATEMENTS,
    SAVE_OFFSETS_PG,
    SAVE_REJECTS_PG,
    TAKE_DIRTY,
    merge_sql,
    minute,
    pyformat,
    stage_ddl,
    stage_name,
    to_tuple,
)

from flowlog.settings import Settings

log = logging.getLogger(__name__)
_MINUTE = timedelta(minutes=1)

_NOT_FACTS = {"trigger_id", "dedup_key", "correlation_id", "input", "output", "error",
              "failed_node", "task_key", "output_summary"}
EXECUTION_FACT_COLUMNS = tuple(c for c in EXECUTION_COLUMNS if c not in _NOT_FACTS)
NODE_RUN_FACT_COLUMNS = tuple(c for c in NODE_RUN_COLUMNS if c not in _NOT_FACTS)
TABLES: dict[str, tuple[str, ...]] = {
    "execution_facts": EXECUTION_FACT_COLUMNS,
    "node_run_facts": NODE_RUN_FACT_COLUMNS,
    "llm_call_facts": LLM_CALL_COLUMNS,
}
#: What rebuild swaps for this projection (the rollups are recomputed from the facts).
SWAPPED = ("execution_facts", "node_run_facts", "llm_call_facts", "rollup_executions_1m",
           "rollup_nodes_1m", "rollup_llm_1m")
_LOAD_EXECUTIONS = (f"SELECT {', '.join(EXECUTION_FACT_COLUMNS)} FROM execution_facts "
                    "WHERE execution_id = ANY(%s::text[])")
_LOAD_RUNS = (f"SELECT {', '.join('n.' + c for c in NODE_RUN_FACT_COLUMNS)} "
              "FROM node_run_facts n JOIN unnest(%s::text[], %s::text[]) AS u(e, nd) "
              "ON n.execution_id = u.e AND n.node_id = u.nd")


def _full(row: Row, columns: tuple[str, ...]) -> Row:
    """A facts row as the fold's row (the columns facts do not keep are None)."""
    out = {c: None for c in columns}
    out.update(row)
    return out


class AnalyticsProjector(ReadModelProjector):
    name: ClassVar[str] = "analytics"
    topics: ClassVar[tuple[str, ...]] = ("execution-events",)

    def __init__(self, settings: Settings, schema: str | None = None, **kw: Any) -> None:
        super().__init__(settings, schema, **kw)
        self.pconn: psycopg.AsyncConnection[Any] | None = None

    async def connect(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self.settings.pg_dsn, options=f"-c search_path={self.schema}",
            application_name=self.application_name)
        async with conn.transaction():
            for table in TABLES:
                await conn.execute(stage_ddl(table))
        self.pconn = conn

    async def close(self) -> None:
        if self.pconn is not None:
            try:
                await self.pconn.close()
            except Exception:
                pass
            self.pconn = None

    def _p(self) -> psycopg.AsyncConnection[Any]:
        if self.pconn is None:
            raise RuntimeError("not connected")
        return self.pconn

    async def stored_offsets(self) -> dict[TopicPartition, int]:
        cur = await self._p().execute(pyformat(READ_OFFSETS_PG), (self.name,))
        out = {TopicPartition(t, p): o for t, p, o in await cur.fetchall()}
        await self._p().commit()
        return out

    async def on_assigned(self, stored: dict[TopicPartition, int]) -> None:
        pass  # no state outside the facts tables

    async def load_facts(self, conn: psycopg.AsyncConnection[Any],
                         decoded: list[tuple[Any, list[ev.ExecutionEvent]]]) -> Rows:
        ids, pairs = touched(decoded)
        rows = Rows()
        if ids:
            cur = await conn.execute(_LOAD_EXECUTIONS, (ids,))
            for r in await cur.fetchall():
                x = _full(row_of(r, EXECUTION_FACT_COLUMNS), EXECUTION_COLUMNS)
                rows.executions[x["execution_id"]] = x
        if pairs:
            cur = await conn.execute(_LOAD_RUNS, ([p[0] for p in pairs],
                                                  [p[1] for p in pairs]))
            for r in await cur.fetchall():
                n = _full(row_of(r, NODE_RUN_FACT_COLUMNS), NODE_RUN_COLUMNS)
                rows.node_runs[(n["execution_id"], n["node_id"], n["attempt"])] = n
        return rows

    async def apply(self, batches: dict[TopicPartition, list[Any]],
                    positions: dict[TopicPartition, int] | None = None) -> Outcome:
        conn = self._p()
        positions = positions or {}
        out = Outcome()
        async with conn.transaction():
            cur = await conn.execute(pyformat(LOCK_OFFSETS_PG),
                                     (self.name, list({tp.topic for tp in batches})))
            stored = {(t, p): o for t, p, o in await cur.fetchall()}
            fresh: dict[TopicPartition, list[Any]] = {}
            for tp, msgs in batches.items():
                at = stored.get((tp.topic, tp.partition), 0)
                keep = [m for m in msgs if m.offset >= at]
                out.skipped += len(msgs) - len(keep)
                if keep:
                    fresh[tp] = keep
                out.next_offsets[tp] = max(at, msgs[-1].offset + 1, positions.get(tp, 0))
            out.records = sum(len(m) for m in fresh.values())
            decoded, rejects = self.decode(fresh)
            rows = await self.load_facts(conn, decoded)
            work = self.fold(fresh, rows, decoded)
            work.rejects[:0] = rejects
            await self.write_facts(conn, work)
            tps = list(out.next_offsets)
            await conn.execute(pyformat(SAVE_OFFSETS_PG),
                               (self.name, [tp.topic for tp in tps],
                                [tp.partition for tp in tps],
                                [out.next_offsets[tp] for tp in tps]))
        self.flush_quarantine()
        out.applied, out.duplicates = work.result.applied, work.result.duplicates
        out.rejects = len(work.rejects)
        out.newest_event_at = work.newest
        out.changes = [StatusChange(x["execution_id"], x["workflow_id"], x["tenant"],
                                    x["status"], x["last_seq"])
                       for x in (work.rows.executions[i] for i in work.result.executions)]
        return out

    async def advance(self, offsets: dict[TopicPartition, int]) -> None:
        tps = list(offsets)
        conn = self._p()
        async with conn.transaction():
            await conn.execute(pyformat(SAVE_OFFSETS_PG),
                               (self.name, [tp.topic for tp in tps],
                                [tp.partition for tp in tps], [offsets[tp] for tp in tps]))

    async def write_facts(self, conn: psycopg.AsyncConnection[Any], work: Work) -> None:
        r = work.result
        xs = [work.rows.executions[i] for i in r.executions]
        runs = [work.rows.node_runs[k] for k in r.node_runs]
        await copy_rows(conn, "execution_facts", xs)
        await copy_rows(conn, "node_run_facts", runs)
        await copy_rows(conn, "llm_call_facts", r.llm_calls)
        minutes = {minute(x["created_at"]) for x in xs} | {minute(n["created_at"])
                                                           for n in runs}
        minutes |= {minute(c["occurred_at"]) for c in r.llm_calls}
        if minutes:
            await conn.execute(MARK_DIRTY, (sorted(minutes),))
        if work.rejects:
            cols = [list(c) for c in zip(*work.rejects, strict=True)]
            await conn.execute(pyformat(SAVE_REJECTS_PG),
                               (self.name, *cols))


async def copy_rows(conn: psycopg.AsyncConnection[Any], table: str, rows: list[Row]) -> None:
    """COPY ``rows`` into the table's stage (psycopg), then merge (upsert, seq-guarded)."""
    if not rows:
        return
    columns = TABLES[table]
    cur = conn.cursor()
    async with cur.copy(f"COPY {stage_name(table)} ({', '.join(columns)}) "
                        "FROM STDIN") as copy:
        for row in rows:
            await copy.write_row(to_tuple(row, columns))
    await conn.execute(merge_sql(table, columns))


async def run_rollups(conn: psycopg.AsyncConnection[Any]) -> int:
    """Recompute the rollups of every dirty minute, in one transaction; returns how many
    minutes. (TimescaleDB form: continuous aggregates refresh themselves; the queue is
    emptied.)"""
    async with conn.transaction():
        cur = await conn.execute(TAKE_DIRTY)
        minutes = [r[0] for r in await cur.fetchall()]
        if not minutes:
            return 0
        cur = await conn.execute(
            "SELECT relkind FROM pg_class WHERE oid = to_regclass('rollup_executions_1m')")
        kind = await cur.fetchone()
        if kind is not None and kind[0] == "v":  # a continuous aggregate (a view)
            return len(minutes)
        params = {"m": minutes, "lo": min(minutes), "hi": max(minutes) + _MINUTE}
        for sql in ROLLUP_STATEMENTS:
            await conn.execute(sql, params)
    return len(minutes)


async def rollup_loop(settings: Settings, stop: asyncio.Event, schema: str | None = None
                      ) -> None:
    """Run `run_rollups` every `FLOWLOG_ROLLUP_INTERVAL_S` until `stop`; errors are logged
    (the dirty queue keeps the minutes for the next run)."""
    conn: psycopg.AsyncConnection[Any] | None = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = await psycopg.AsyncConnection.connect(
                    settings.pg_dsn, options=f"-c search_path={schema or settings.pg_schema}")
            await run_rollups(conn)
        except Exception as exc:
            log.warning("rollups: %s (retrying)", exc)
            if conn is not None:
                await conn.close()
            conn = None
        try:
            await asyncio.wait_for(stop.wait(), settings.rollup_interval_s)
        except TimeoutError:
            pass
    if conn is not None:
        await conn.close()

