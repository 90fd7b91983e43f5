"""The read-model projector (asyncpg): workflows and their versions from
`workflow-definitions`; executions, triggers, node runs and the events index from
`execution-events`.

One batch is one transaction: lock the partitions' offset rows, drop records below them,
load the rows the batch touches, fold (`projections.fold`, `projections.definitions`),
COPY the changed rows into session temp tables and merge them with one
``INSERT … ON CONFLICT`` per table (seq-guarded), write rejects and offsets, commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import asyncpg
from aiokafka import TopicPartition
from flowlog.aggregates.execution import events as ev
from flowlog.projections import kafka as pk
from flowlog.projections.definitions import (
    VERSION_COLUMNS,
    WORKFLOW_COLUMNS,
    DefinitionChanges,
    Definitions,
    apply_definition,
)
from flowlog.projections.fold import (
    EVENT_COLUMNS,
    EXECUTION_COLUMNS,
    JSON_COLUMNS,
    NODE_RUN_COLUMNS,
    TRIGGER_COLUMNS,
    FoldResult,
    RawJSON,
    Reject,
    Row,
    Rows,
    fold_record,
    json_value,
)
from flowlog.projections.live import StatusChange
from flowlog.projections.runner import (
    Outcome,
    Projector,
    RejectRow,
    coords,
    decode_events,
    reject_row,
)
from flowlog.projections.search_attributes_store import mark_pending
from flowlog.projections.sql import (
    LOCK_OFFSETS_PG,
    READ_OFFSETS_PG,
    SAVE_OFFSETS_PG,
    SAVE_REJECTS_PG,
    merge_sql,
    stage_ddl,
    stage_name,
    to_tuple,
)
from flowlog.schemas.errors import ContractError

from flowlog.settings import Settings

log = logging.getLogger(__name__)

#: The tables of this projection (what rebuild swaps), with their columns.
TABLES: dict[str, tuple[str, ...]] = {
    "workflows": WORKFLOW_COLUMNS,
    "workflow_versions": VERSION_COLUMNS,
    "workflow_executions": EXECUTION_COLUMNS,
    "triggers": TRIGGER_COLUMNS,
    "node_runs": NODE_RUN_COLUMNS,
    "execution_events": EVENT_COLUMNS,
}
_LOAD_EXECUTIONS = (f"SELECT {', '.join(EXECUTION_COLUMNS)} FROM workflow_executions "
                    "WHERE execution_id = ANY($1::text[])")
_LOAD_RUNS = (f"SELECT {', '.join('n.' + c for c in NODE_RUN_COLUMNS)} FROM node_runs n "
              "JOIN unnest($1::text[], $2::text[]) AS u(e, nd) "
              "ON n.execution_id = u.e AND n.node_id = u.nd")


#: JSON columns the fold only writes: kept as the table's text, not parsed.
_PASS_THROUGH = frozenset({"input", "output", "error"})


def row_of(record: Iterable[Any], columns: tuple[str, ...]) -> Row:
    out: Row = {}
    for c, v in zip(columns, record, strict=True):
        if c in JSON_COLUMNS and v is not None:
            v = RawJSON(v) if c in _PASS_THROUGH else json_value(v)
        out[c] = v
    return out


def touched(decoded: list[tuple[Any, list[ev.ExecutionEvent]]]
            ) -> tuple[list[str], list[tuple[str, str]]]:
    """The executions and (execution, node) pairs a batch's events touch."""
    ids: dict[str, None] = {}
    pairs: dict[tuple[str, str], None] = {}
    for _msg, events in decoded:
        for e in events:
            ids[e.execution_id] = None
            node = getattr(e, "node_id", None)
            if node is not None:
                pairs[(e.execution_id, node)] = None
                if isinstance(e, ev.LoopIterationCompleted):
                    pairs[(e.execution_id, f"{node}[{e.index}]")] = None
    return list(ids), list(pairs)


@dataclass
class Work:
    """A batch, decoded and folded: everything the transaction writes."""

    rows: Rows = field(default_factory=Rows)
    result: FoldResult = field(default_factory=FoldResult)
    definitions: DefinitionChanges = field(default_factory=DefinitionChanges)
    rejects: list[RejectRow] = field(default_factory=list)
    newest: datetime | None = None


class ReadModelProjector(Projector):
    name: ClassVar[str] = "readmodel"
    topics: ClassVar[tuple[str, ...]] = ("execution-events", "workflow-definitions")

    def __init__(self, settings: Settings, schema: str | None = None, **kw: Any) -> None:
        super().__init__(settings, schema, **kw)
        self.conn: asyncpg.Connection | None = None
        self.definitions = Definitions()
        self.events_topic = pk.topic_name(settings, "execution-events")
        self.definitions_topic = pk.topic_name(settings, "workflow-definitions")

    # --- connection ------------------------------------------------------------------
    async def connect(self) -> None:
        conn = await asyncpg.connect(self.settings.pg_dsn, server_settings={
            "search_path": self.schema, "application_name": self.application_name})
        for table in TABLES:
            await conn.execute(stage_ddl(table))
        self.conn = conn

    async def close(self) -> None:
        if self.conn is not None:
            try:
                await self.conn.close(timeout=2)
            except Exception:
                self.conn.terminate()
            self.conn = None

    def _c(self) -> asyncpg.Connection:
        if self.conn is None:
            raise RuntimeError("not connected")
        return self.conn

    async def stored_offsets(self) -> dict[TopicPartition, int]:
        rows = await self._c().fetch(READ_OFFSETS_PG, self.name)
        return {TopicPartition(r["topic"], r["partition"]): r["next_offset"] for r in rows}

    async def on_assigned(self, stored: dict[TopicPartition, int]) -> None:
        """Rebuild the definition aggregates: read workflow-definitions up to the stored
        offset (definitions are few; the aggregates stay in memory)."""
        self.definitions = Definitions()
        consumer = pk.plain_consumer(self.settings)
        await consumer.start()
        try:
            tps = await pk.partitions(consumer, self.definitions_topic)
            if not tps:
                return
            consumer.assign(tps)
            begins = await consumer.beginning_offsets(tps)
            for tp in tps:
                async for msgs in pk.read_range(consumer, tp, begins[tp], stored.get(tp, 0)):
                    for msg in msgs:
                        try:
                            decoded = self.codec.decode(msg.value)
                            apply_definition(self.definitions, decoded.name, decoded.record,
                                             DefinitionChanges())
                        except (Reject, ContractError):
                            pass  # rejected when it was first applied
        finally:
            await consumer.stop()

    # --- one batch -------------------------------------------------------------------
    def fold(self, batches: dict[TopicPartition, list[Any]], rows: Rows | None = None,
             decoded: list[tuple[Any, list[ev.ExecutionEvent]]] | None = None) -> Work:
        """The pure part of a batch: decode and fold into `rows` (loaded by the caller)."""
        work = Work(rows=rows or Rows())
        if decoded is None:
            decoded, work.rejects = self.decode(batches)
        for msg, events in decoded:
            try:
                fold_record(work.rows, events, coords(msg), work.result)
            except Reject as exc:
                work.rejects.append(reject_row(msg, str(exc), events[0].execution_id,
                                               events[0].event_type))
            except Exception as exc:  # a bug must not stop the projector either
                log.exception("fold failed on %s[%s]@%s", msg.topic, msg.partition,
                              msg.offset)
                work.rejects.append(reject_row(msg, f"internal error: {exc!r}"))
            if events and (work.newest is None or events[-1].occurred_at > work.newest):
                work.newest = events[-1].occurred_at
        for tp, msgs in batches.items():
            if tp.topic != self.definitions_topic:
                continue
            for msg in msgs:
                try:
                    d = self.codec.decode(msg.value)
                    apply_definition(self.definitions, d.name, d.record, work.definitions)
                except ContractError as exc:
                    work.rejects.append(reject_row(msg, f"undecodable record: {exc}"))
                    self.quarantine(msg, str(exc))
                except Reject as exc:
                    work.rejects.append(reject_row(msg, str(exc)))
        return work

    def decode(self, batches: dict[TopicPartition, list[Any]]
               ) -> tuple[list[tuple[Any, list[ev.ExecutionEvent]]], list[RejectRow]]:
        decoded: list[tuple[Any, list[ev.ExecutionEvent]]] = []
        rejects: list[RejectRow] = []
        for tp, msgs in batches.items():
            if tp.topic != self.events_topic:
                continue
            for msg in msgs:
                try:
                    events = decode_events(self.codec, msg)
                except Reject as exc:
                    rejects.append(reject_row(msg, str(exc)))
                    if str(exc).startswith("undecodable"):
                        self.quarantine(msg, str(exc))
                    continue
                if events:
                    decoded.append((msg, events))
        return decoded, rejects

    async def load(self, conn: asyncpg.Connection,
                   decoded: list[tuple[Any, list[ev.ExecutionEvent]]]) -> Rows:
        ids, pairs = touched(decoded)
        rows = Rows()
        if ids:
            for r in await conn.fetch(_LOAD_EXECUTIONS, ids):
                x = row_of(r, EXECUTION_COLUMNS)
                rows.executions[x["execution_id"]] = x
        if pairs:
            for r in await conn.fetch(_LOAD_RUNS, [p[0] for p in pairs],
                                      [p[1] for p in pairs]):
                n = row_of(r, NODE_RUN_COLUMNS)
                rows.node_runs[(n["execution_id"], n["node_id"], n["attempt"])] = n
        return rows

    async def apply(self, batches: dict[TopicPartition, list[Any]],
                    positions: dict[TopicPartition, int] | None = None) -> Outcome:
        conn = self._c()
        positions = positions or {}
        out = Outcome()
        async with conn.transaction():
            stored = {(r["topic"], r["partition"]): r["next_offset"] for r in await conn.fetch(
                LOCK_OFFSETS_PG, self.name, list({tp.topic for tp in batches}))}
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
            rows = await self.load(conn, decoded)
            work = self.fold(fresh, rows, decoded)
            work.rejects[:0] = rejects
            await self.write(conn, work)
            tps = list(out.next_offsets)
            await conn.execute(SAVE_OFFSETS_PG, self.name, [tp.topic for tp in tps],
                               [tp.partition for tp in tps],
                               [out.next_offsets[tp] for tp in tps])
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
        await self._c().execute(SAVE_OFFSETS_PG, self.name, [tp.topic for tp in tps],
                                [tp.partition for tp in tps], [offsets[tp] for tp in tps])

    async def write(self, conn: asyncpg.Connection, work: Work) -> None:
        """Every row of a folded batch, the rejects; inside the caller's transaction."""
        r = work.result
        await write_rows(conn, "workflow_executions",
                         [work.rows.executions[i] for i in r.executions])
        if r.executions:  # search attributes' live path: queue them for evaluation
            await mark_pending(conn, [(i, work.rows.executions[i]["last_seq"])
                                      for i in r.executions])
        await write_rows(conn, "node_runs", [work.rows.node_runs[k] for k in r.node_runs])
        await write_rows(conn, "execution_events", r.events)
        await write_rows(conn, "triggers", r.triggers)
        await write_rows(conn, "workflows", list(work.definitions.workflows.values()))
        await write_rows(conn, "workflow_versions", work.definitions.versions)
        if work.rejects:
            cols = list(zip(*work.rejects, strict=True))
            await conn.execute(SAVE_REJECTS_PG, self.name, *[list(c) for c in cols])


#: Tables whose rows the fold emits only once (an event, a trigger: the seq guard under
#: the partition's offset lock): COPYed straight in, inside a savepoint; should a row be
#: there already after all, the savepoint is rolled back and the staged merge used.
INSERT_ONLY = frozenset({"execution_events", "triggers"})


async def write_rows(conn: asyncpg.Connection, table: str, rows: list[Row]) -> None:
    """COPY ``rows`` into the table's stage, then merge (upsert, seq-guarded)."""
    if not rows:
        return
    columns = TABLES[table]
    records = [to_tuple(r, columns) for r in rows]
    if table in INSERT_ONLY:
        try:
            async with conn.transaction():  # a savepoint
                await conn.copy_records_to_table(table, columns=list(columns),
                                                 records=records)
            return
        except asyncpg.UniqueViolationError:
            log.info("%s: rows already present; merging instead", table)
    await conn.copy_records_to_table(stage_name(table), columns=list(columns),
                                     records=records)
    await conn.execute(merge_sql(table, columns))


