"""Operations on projections: status (offsets and lag), verify (tables against a fresh
fold of the log) and rebuild (a shadow schema from the log, then a swap in one
transaction). The CLI (`flowlog projections …`) and the tests call these.

The swap, exactly: rebuild creates schema ``<schema>__shadow_<name>`` holding empty
copies (``LIKE … INCLUDING ALL``) of the projection's own tables, plus
``projection_offsets`` and ``projection_rejects``; folds the log into it (COPY); checks
counts and checksums against the fold; then, in ONE transaction on the live schema:

1. locks the projector's rows of ``projection_offsets`` (``FOR UPDATE``), then the
   projection's tables (``ACCESS EXCLUSIVE``): a live projector's transaction in flight
   finishes first, the next one waits; readers wait for the commit, they never see a
   missing or half-built table;
2. applies to the shadow whatever the live projector committed past the shadow's
   offsets (the gap), with the incremental projector;
3. moves each live table to a scratch schema and each shadow table into the live schema
   (``ALTER TABLE … SET SCHEMA``; names, indexes and constraints come along);
4. sets the projector's offsets and rejects in the live tables to the shadow's;

then commits and drops the scratch and shadow schemas. Only the projection's own tables
move: auth, webhook registrations, schedules and the other projection stay where they are.
A reader blocked on a swapped table resumes on the new one (PostgreSQL looks the name up
again after the lock is granted).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from aiokafka import TopicPartition
from flowlog.projections import kafka as pk
from flowlog.projections.analytics import (
    EXECUTION_FACT_COLUMNS,
    NODE_RUN_FACT_COLUMNS,
    SWAPPED,
    AnalyticsProjector,
    run_rollups,
)
from flowlog.projections.definitions import VERSION_COLUMNS, WORKFLOW_COLUMNS
from flowlog.projections.fold import (
    EVENT_COLUMNS,
    EXECUTION_COLUMNS,
    LLM_CALL_COLUMNS,
    NODE_RUN_COLUMNS,
    TRIGGER_COLUMNS,
    Row,
    Rows,
)
from flowlog.projections.readmodel import TABLES as READMODEL_TABLES
from flowlog.projections.readmodel import ReadModelProjector, Work
from flowlog.projections.replay import (
    Difference,
    Expected,
    differences,
    fresh_fold,
    table_rows,
)
from flowlog.projections.sql import to_tuple

from flowlog.settings import Settings

NAMES = ("readmodel", "analytics")
TableRows = list[tuple[str, tuple[str, ...], list[Row]]]


def extract_readmodel(rows: Rows, work: Work) -> TableRows:
    return [
        ("workflows", WORKFLOW_COLUMNS, list(work.definitions.workflows.values())),
        ("workflow_versions", VERSION_COLUMNS, work.definitions.versions),
        ("workflow_executions", EXECUTION_COLUMNS, list(rows.executions.values())),
        ("triggers", TRIGGER_COLUMNS, work.result.triggers),
        ("node_runs", NODE_RUN_COLUMNS, list(rows.node_runs.values())),
        ("execution_events", EVENT_COLUMNS, work.result.events),
    ]


def extract_analytics(rows: Rows, work: Work) -> TableRows:
    return [
        ("execution_facts", EXECUTION_FACT_COLUMNS, list(rows.executions.values())),
        ("node_run_facts", NODE_RUN_FACT_COLUMNS, list(rows.node_runs.values())),
        ("llm_call_facts", LLM_CALL_COLUMNS, work.result.llm_calls),
    ]


def projector(name: str, settings: Settings, schema: str | None = None
              ) -> ReadModelProjector:
    if name == "readmodel":
        return ReadModelProjector(settings, schema)
    if name == "analytics":
        return AnalyticsProjector(settings, schema)
    raise ValueError(f"unknown projection {name!r}: use one of {', '.join(NAMES)}")


def extract_of(name: str) -> Callable[[Rows, Work], TableRows]:
    return extract_readmodel if name == "readmodel" else extract_analytics


def columns_of(name: str) -> dict[str, tuple[str, ...]]:
    if name == "readmodel":
        return dict(READMODEL_TABLES)
    return {"execution_facts": EXECUTION_FACT_COLUMNS, "node_run_facts": NODE_RUN_FACT_COLUMNS,
            "llm_call_facts": LLM_CALL_COLUMNS}


def swapped_tables(name: str) -> tuple[str, ...]:
    return tuple(READMODEL_TABLES) if name == "readmodel" else SWAPPED


async def connect(settings: Settings, schema: str) -> asyncpg.Connection:
    return await asyncpg.connect(settings.pg_dsn, server_settings={"search_path": schema})


# --- status ------------------------------------------------------------------------------

@dataclass
class PartitionStatus:
    projector: str
    topic: str
    partition: int
    stored: int
    end: int
    updated_at: datetime | None

    @property
    def lag(self) -> int:
        return max(0, self.end - self.stored)


async def status(settings: Settings, schema: str | None = None) -> list[PartitionStatus]:
    """Every projector's stored offset per partition against the partition's end."""
    schema = schema or settings.pg_schema
    conn = await connect(settings, schema)
    try:
        stored = {(r["projector"], r["topic"], r["partition"]): r for r in await conn.fetch(
            "SELECT projector, topic, partition, next_offset, updated_at "
            "FROM projection_offsets")}
    finally:
        await conn.close()
    out = []
    for name in NAMES:
        p = projector(name, settings, schema)
        ends = await pk.end_offsets(settings, p.topic_names)
        for tp, end in sorted(ends.items(), key=lambda i: (i[0].topic, i[0].partition)):
            r = stored.get((name, tp.topic, tp.partition))
            out.append(PartitionStatus(name, tp.topic, tp.partition,
                                       r["next_offset"] if r else 0, end,
                                       r["updated_at"] if r else None))
    return out


# --- verify ------------------------------------------------------------------------------

@dataclass
class VerifyReport:
    projection: str
    differences: list[Difference] = field(default_factory=list)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # table: (table, log)
    rejects: list[tuple[str, int, int, str]] = field(default_factory=list)
    missing_rejects: list[tuple[str, int, int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences and not self.missing_rejects


async def verify(settings: Settings, name: str, schema: str | None = None,
                 progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Compare every table of projection ``name`` with a fresh fold of the log up to the
    offsets the projector has stored (read in the same snapshot as the tables)."""
    schema = schema or settings.pg_schema
    conn = await connect(settings, schema)
    report = VerifyReport(name)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            offsets = {TopicPartition(r["topic"], r["partition"]): r["next_offset"]
                       for r in await conn.fetch(
                           "SELECT topic, partition, next_offset FROM projection_offsets "
                           "WHERE projector = $1", name)}
            have = {t: await table_rows(conn, t, cols)
                    for t, cols in columns_of(name).items()}
            rejects = await conn.fetch(
                "SELECT topic, partition, kafka_offset, reason FROM projection_rejects "
                "WHERE projector = $1 ORDER BY topic, partition, kafka_offset", name)
    finally:
        await conn.close()
    expected = await fresh_fold(settings, projector(name, settings, schema), extract_of(name),
                                until=offsets, progress=progress)
    for table, cols in columns_of(name).items():
        want = expected.tables.get(table, {})
        report.counts[table] = (len(have[table]), len(want))
        report.differences += differences(table, cols, want, have[table])
    report.rejects = [(r["topic"], r["partition"], r["kafka_offset"], r["reason"])
                      for r in rejects]
    stored = {(r[0], r[1], r[2]) for r in report.rejects}
    report.missing_rejects = [(*k, reason) for k, reason in expected.rejects.items()
                              if k not in stored]
    return report


# --- rebuild -----------------------------------------------------------------------------

@dataclass
class RebuildReport:
    projection: str
    shadow: str
    records: int = 0
    events: int = 0
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)
    gap_records: int = 0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


class RebuildError(RuntimeError):
    """The shadow does not match the fold (nothing was swapped)."""


async def start_offsets(settings: Settings, topics: list[str], at: datetime
                        ) -> dict[TopicPartition, int]:
    """Each partition's first offset at or after time ``at`` (its end when none)."""
    consumer = pk.plain_consumer(settings)
    await consumer.start()
    try:
        tps = [tp for t in topics for tp in await pk.partitions(consumer, t)]
        found = await consumer.offsets_for_times({tp: int(at.timestamp() * 1000) for tp in tps})
        ends = await consumer.end_offsets(tps)
        return {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in tps}
    finally:
        await consumer.stop()


async def rebuild(settings: Settings, name: str, schema: str | None = None,
                  since: datetime | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  total: Callable[[int], None] | None = None,
                  before_swap: Callable[[], Any] | None = None) -> RebuildReport:
    """Rebuild projection ``name`` from the log into a shadow schema and swap it in.

    ``since``: start each partition at this time instead of the beginning (executions
    that began earlier are then rejected as unknown, and listed). ``total(records)`` is
    called once with the records to read, ``progress(records, events)`` per chunk.
    """
    live = schema or settings.pg_schema
    shadow = f"{live}__shadow_{name}"
    report = RebuildReport(name, shadow)
    began = time.perf_counter()
    conn = await connect(settings, live)
    try:
        if name == "analytics" and await _is_view(conn, "rollup_executions_1m"):
            raise RebuildError("analytics here uses TimescaleDB continuous aggregates; "
                               "rebuild them with refresh_continuous_aggregate instead")
        tables = swapped_tables(name)
        await _refuse_dependents(conn, tables)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{shadow}" CASCADE')
        await conn.execute(f'CREATE SCHEMA "{shadow}"')
        for t in (*tables, "projection_offsets", "projection_rejects", "rollup_dirty"):
            if await _exists(conn, t):
                await conn.execute(f'CREATE TABLE "{shadow}".{t} (LIKE "{live}".{t} '
                                   "INCLUDING ALL)")
                await _same_index_names(conn, live, shadow, t)
    finally:
        await conn.close()

    p = projector(name, settings, shadow)
    ends = await pk.end_offsets(settings, p.topic_names)
    start = await start_offsets(settings, p.topic_names, since) if since else None
    if total is not None:
        total(sum(e - (start or {}).get(tp, 0) for tp, e in ends.items()))
    sconn = await connect(settings, shadow)
    counts: dict[str, int] = {}
    try:
        async def write(expected: Expected, parts: TableRows) -> None:
            for table, cols, rows in parts:
                if rows:
                    await sconn.copy_records_to_table(
                        table, columns=list(cols), records=[to_tuple(r, cols) for r in rows])
                counts[table] = counts.get(table, 0) + len(rows)
                expected.add(table, cols, rows)  # kept in normal form for the checksum

        # fold partition by partition; each partition's rows are written once it ends
        expected = await fresh_fold(settings, p, extract_of(name), until=ends, start=start,
                                    progress=progress, on_partition=write)
        report.records, report.events = expected.records, expected.events
        await _store_offsets_and_rejects(sconn, name, ends, expected)
        if name == "analytics":
            await _mark_all_dirty(sconn)
        # the check: read the shadow back, compare with the fold (counts and checksums)
        for table, cols in columns_of(name).items():
            have = await table_rows(sconn, table, cols)
            want = expected.tables.get(table, {})
            diffs = differences(table, cols, want, have, limit=5)
            if diffs:
                raise RebuildError(f"shadow {shadow}.{table} differs from the fold: "
                                   + "; ".join(d.render() for d in diffs))
            report.counts[table] = len(have)
            report.checksums[table] = expected.checksum(table)
    finally:
        await sconn.close()
    if name == "analytics":
        import psycopg

        async with await psycopg.AsyncConnection.connect(
                settings.pg_dsn, options=f"-c search_path={shadow}") as pconn:
            await run_rollups(pconn)
    if before_swap is not None:
        await before_swap()
    report.gap_records = await _swap(settings, name, live, shadow)
    report.seconds = time.perf_counter() - began
    return report


async def _store_offsets_and_rejects(conn: asyncpg.Connection, name: str,
                                     ends: dict[TopicPartition, int],
                                     expected: Expected) -> None:
    tps = list(ends)
    await conn.execute(
        "INSERT INTO projection_offsets (projector, topic, partition, next_offset) "
        "SELECT $1, t, p, o FROM unnest($2::text[], $3::int[], $4::bigint[]) AS u(t, p, o)",
        name, [tp.topic for tp in tps], [tp.partition for tp in tps], [ends[tp] for tp in tps])
    if expected.rejects:
        keys = list(expected.rejects)
        await conn.execute(
            "INSERT INTO projection_rejects (projector, topic, partition, kafka_offset, reason) "
            "SELECT $1, t, p, o, r FROM unnest($2::text[], $3::int[], $4::bigint[], "
            "$5::text[]) AS u(t, p, o, r)", name, [k[0] for k in keys], [k[1] for k in keys],
            [k[2] for k in keys], [expected.rejects[k][:2000] for k in keys])


async def _mark_all_dirty(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "INSERT INTO rollup_dirty (bucket) SELECT DISTINCT date_bin('1 minute', created_at, "
        "timestamptz '2000-01-01 00:00:00+00') FROM execution_facts UNION SELECT "
        "date_bin('1 minute', created_at, timestamptz '2000-01-01 00:00:00+00') "
        "FROM node_run_facts UNION SELECT date_bin('1 minute', occurred_at, "
        "timestamptz '2000-01-01 00:00:00+00') FROM llm_call_facts ON CONFLICT DO NOTHING")


_DEPENDENTS = """
SELECT DISTINCT v.relname AS name, 'view' AS kind FROM pg_depend d
  JOIN pg_rewrite r ON d.objid = r.oid JOIN pg_class v ON r.ev_class = v.oid
  WHERE d.refobjid = $1::regclass AND v.oid <> $1::regclass
UNION
SELECT conname, 'foreign key of ' || conrelid::regclass::text FROM pg_constraint
  WHERE confrelid = $1::regclass AND contype = 'f'
"""


async def _refuse_dependents(conn: asyncpg.Connection, tables: tuple[str, ...]) -> None:
    """A view or foreign key on a projection table would move with it to the scratch
    schema and be dropped: refuse, naming them, before doing anything."""
    found = []
    for t in tables:
        if await _exists(conn, t):
            found += [f"{r['kind']} {r['name']} on {t}" for r in await conn.fetch(_DEPENDENTS, t)]
    if found:
        raise RebuildError(f"{', '.join(found)} depend on the tables a rebuild swaps; a swap "
                           "would drop them. Drop them (and recreate after) or point them "
                           "elsewhere; nothing was changed.")


_INDEXES = ("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND "
            "tablename = $2")


async def _same_index_names(conn: asyncpg.Connection, live: str, shadow: str,
                            table: str) -> None:
    """Give the shadow's indexes the live ones' names (LIKE makes new names), so that after
    the swap other areas' migrations still find their indexes (e.g. the query API's) by
    name. Indexes are matched by their definition without the name and schema."""
    def shape(name: str, definition: str, schema: str) -> str:
        return definition.replace(f" {name} ON ", " ON ", 1).replace(
            f'"{schema}".', "").replace(f"{schema}.", "")

    want = {shape(r["indexname"], r["indexdef"], live): r["indexname"]
            for r in await conn.fetch(_INDEXES, live, table)}
    for r in await conn.fetch(_INDEXES, shadow, table):
        target = want.get(shape(r["indexname"], r["indexdef"], shadow))
        if target is not None and target != r["indexname"]:
            await conn.execute(f'ALTER INDEX "{shadow}"."{r["indexname"]}" '
                               f'RENAME TO "{target}"')


async def _exists(conn: asyncpg.Connection, table: str) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table))


async def _is_view(conn: asyncpg.Connection, table: str) -> bool:
    kind = await conn.fetchval("SELECT relkind FROM pg_class WHERE oid = to_regclass($1)",
                               table)
    return kind == "v"


async def _swap(settings: Settings, name: str, live: str, shadow: str) -> int:
    """The swap transaction (see the module docstring); returns the gap's record count."""
    tables = swapped_tables(name)
    scratch = f"{live}__old_{name}"
    conn = await connect(settings, live)
    gap = 0
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{scratch}" CASCADE')
        async with conn.transaction():
            await conn.execute("SELECT 1 FROM projection_offsets WHERE projector = $1 "
                               "FOR UPDATE", name)
            await conn.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
            live_offsets = {TopicPartition(r["topic"], r["partition"]): r["next_offset"]
                            for r in await conn.fetch(
                                "SELECT topic, partition, next_offset FROM projection_offsets "
                                "WHERE projector = $1", name)}
            gap = await _catch_up(settings, name, shadow, live_offsets)
            await conn.execute(f'CREATE SCHEMA "{scratch}"')
            for t in tables:
                await conn.execute(f'ALTER TABLE "{live}".{t} SET SCHEMA "{scratch}"')
                await conn.execute(f'ALTER TABLE "{shadow}".{t} SET SCHEMA "{live}"')
            await conn.execute(
                f'INSERT INTO "{live}".projection_offsets AS o (projector, topic, partition, '
                f'next_offset) SELECT projector, topic, partition, next_offset FROM '
                f'"{shadow}".projection_offsets WHERE projector = $1 ON CONFLICT (projector, '
                "topic, partition) DO UPDATE SET next_offset = excluded.next_offset, "
                "updated_at = now()", name)
            await conn.execute(f'DELETE FROM "{live}".projection_rejects WHERE projector = $1',
                               name)
            await conn.execute(
                f'INSERT INTO "{live}".projection_rejects SELECT * FROM '
                f'"{shadow}".projection_rejects WHERE projector = $1', name)
            if name == "analytics":  # minutes the gap touched: recomputed by the next run
                await conn.execute(
                    f'INSERT INTO "{live}".rollup_dirty SELECT * FROM "{shadow}".rollup_dirty '
                    "ON CONFLICT DO NOTHING")
        await conn.execute(f'DROP SCHEMA IF EXISTS "{scratch}" CASCADE')
        await conn.execute(f'DROP SCHEMA IF EXISTS "{shadow}" CASCADE')
    finally:
        await conn.close()
    return gap


async def _catch_up(settings: Settings, name: str, shadow: str,
                    live_offsets: dict[TopicPartition, int]) -> int:
    """Apply to the shadow what the live projector committed past the shadow's offsets."""
    p = projector(name, settings, shadow)
    await p.connect()
    try:
        stored = await p.stored_offsets()
        behind = {tp: stored.get(tp, 0) for tp, o in live_offsets.items()
                  if o > stored.get(tp, 0)}
        if not behind:
            return 0
        await p.on_assigned(stored)
        from flowlog.projections.replay import read_log

        n = 0
        async for tp, msgs in read_log(settings, p.topic_names, until=live_offsets,
                                       start=behind):
            if tp in behind:
                await p.apply({tp: msgs})
                n += len(msgs)
        # read up to the live offsets: past a trailing transaction marker too ("last + 1"
        # would put the swapped-in offsets one behind the live projector's position)
        await p.advance({tp: live_offsets[tp] for tp in behind})
        return n
    finally:
        await p.close()
