"""Fresh folds of the log, and comparing tables with them: what `verify` and `rebuild`
share.

A fresh fold reads every partition of a projector's topics from the beginning (or a
start offset) up to given end offsets and folds it in memory with the projector's own
pure layer (`Projector.fold`), partition by partition (an execution lives in one
partition). The result, `Expected`, holds each table's rows keyed by primary key, in a
normal form (JSON as canonical text, times in UTC, costs rounded) in which table rows and
folded rows compare equal.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC
from functools import cache
from operator import itemgetter
from typing import Any

from aiokafka import TopicPartition
from flowlog.projections import kafka as pk
from flowlog.projections.fold import JSON_COLUMNS, Row, Rows, json_text
from flowlog.projections.readmodel import ReadModelProjector, Work
from flowlog.projections.sql import KEYS

from flowlog.settings import Settings

Normal = tuple[Any, ...]


def normal(row: Row, columns: tuple[str, ...]) -> Normal:
    """A row (a complete dict) in the form tables and folds compare in."""
    return _normaliser(columns)(_getter(columns)(row))


@cache
def _getter(columns: tuple[str, ...]) -> Callable[[Row], Any]:
    get = itemgetter(*columns)
    return (lambda row: (get(row),)) if len(columns) == 1 else get


@cache
def _normaliser(columns: tuple[str, ...]) -> Callable[[Any], Normal]:
    """Values in column order → normal form: JSON as canonical text, times in UTC, costs
    rounded to 6 places; everything else as it is."""
    json_at = [i for i, c in enumerate(columns) if c in JSON_COLUMNS or c == "definition"]
    time_at = [i for i, c in enumerate(columns) if c.endswith("_at")]
    cost_at = [i for i, c in enumerate(columns) if c == "cost_usd"]

    def norm(values: Any) -> Normal:
        out = list(values)
        for i in json_at:
            v = out[i]
            out[i] = json_text(_loads(v) if isinstance(v, str | bytes) else v)
        for i in time_at:
            v = out[i]
            if v is not None and v.tzinfo is not UTC:
                out[i] = v.astimezone(UTC)
        for i in cost_at:
            if out[i] is not None:
                out[i] = round(out[i], 6)
        return tuple(out)

    return norm


def _loads(text: str | bytes) -> Any:
    import orjson

    return orjson.loads(text)


@dataclass
class Expected:
    """A fresh fold's rows per table (normal form, by key), rejects and where it stopped."""

    tables: dict[str, dict[Normal, Normal]] = field(default_factory=dict)
    rejects: dict[tuple[str, int, int], str] = field(default_factory=dict)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    events: int = 0
    records: int = 0

    def add(self, table: str, columns: tuple[str, ...], rows: list[Row]) -> None:
        key_idx = [columns.index(k) for k in KEYS.get(table, ())]
        target = self.tables.setdefault(table, {})
        for r in rows:
            n = normal(r, columns)
            target[tuple(n[i] for i in key_idx)] = n

    def checksum(self, table: str) -> str:
        return checksum(self.tables.get(table, {}).values())


def checksum(rows: Any) -> str:
    h = hashlib.sha256()
    for n in sorted(repr(r) for r in rows):
        h.update(n.encode())
        h.update(b"\n")
    return h.hexdigest()


#: How a projection's fold becomes table rows: (table, columns, rows of a fold).
Extract = Callable[[Rows, Work], list[tuple[str, tuple[str, ...], list[Row]]]]


async def read_log(settings: Settings, topics: list[str],
                   until: dict[TopicPartition, int] | None = None,
                   start: dict[TopicPartition, int] | None = None, chunk: int = 5000,
                   ) -> AsyncIterator[tuple[TopicPartition, list[Any]]]:
    """Each partition's records, in chunks, from ``start`` (default: the beginning) up to
    ``until`` (default: the end offsets now)."""
    consumer = pk.plain_consumer(settings)
    await consumer.start()
    try:
        tps = [tp for t in topics for tp in await pk.partitions(consumer, t)]
        if not tps:
            return
        consumer.assign(tps)
        begins = await consumer.beginning_offsets(tps)
        ends = until if until is not None else await consumer.end_offsets(tps)
        for tp in tps:
            first = max(begins[tp], (start or {}).get(tp, 0))
            async for msgs in pk.read_range(consumer, tp, first, ends.get(tp, 0), chunk):
                yield tp, msgs
    finally:
        await consumer.stop()


async def fresh_fold(settings: Settings, projector: ReadModelProjector, extract: Extract,
                     until: dict[TopicPartition, int] | None = None,
                     start: dict[TopicPartition, int] | None = None,
                     progress: Callable[[int, int], None] | None = None,
                     on_partition: Callable[[Expected, list[tuple[str, tuple[str, ...],
                                                                  list[Row]]]], Any]
                     | None = None) -> Expected:
    """Fold the projector's topics in memory, partition by partition.

    ``progress(records, events)`` is called after each chunk; ``on_partition`` (sync or
    async) receives each finished partition's rows instead of `Expected` (rebuild writes
    them, then adds them)."""
    expected = Expected()
    current: TopicPartition | None = None
    rows = Rows()
    work_all: list[Work] = []

    async def finish() -> None:
        if current is None:
            return
        merged = Work(rows=rows)
        for w in work_all:
            merged.result.events += w.result.events
            merged.result.triggers += w.result.triggers
            merged.result.llm_calls += w.result.llm_calls
            merged.definitions.versions += w.definitions.versions
            merged.definitions.workflows.update(w.definitions.workflows)
        merged.result.executions = set(rows.executions)
        merged.result.node_runs = set(rows.node_runs)
        parts = extract(rows, merged)
        if on_partition is not None:
            done = on_partition(expected, parts)
            if inspect.isawaitable(done):
                await done
        else:
            for table, columns, table_rows in parts:
                expected.add(table, columns, table_rows)

    async for tp, msgs in read_log(settings, projector.topic_names, until, start):
        if tp != current:
            await finish()
            current, rows, work_all = tp, Rows(), []
        work = projector.fold({tp: msgs}, rows)
        work_all.append(work)
        for r in work.rejects:
            expected.rejects[(r[0], r[1], r[2])] = r[5]
        expected.offsets[tp] = msgs[-1].offset + 1
        expected.records += len(msgs)
        expected.events += work.result.applied
        if progress is not None:
            progress(len(msgs), work.result.applied)
    await finish()
    return expected


async def table_rows(conn: Any, table: str, columns: tuple[str, ...],
                     where: str = "") -> dict[Normal, Normal]:
    """A table's rows in normal form, by key (asyncpg connection)."""
    key_idx = [columns.index(k) for k in KEYS.get(table, ())]
    out: dict[Normal, Normal] = {}
    norm = _normaliser(columns)
    for r in await conn.fetch(f"SELECT {', '.join(columns)} FROM {table} {where}"):
        n = norm(r)
        out[tuple(n[i] for i in key_idx)] = n
    return out


@dataclass
class Difference:
    table: str
    key: Normal
    what: str  # missing, unexpected, differs
    detail: str = ""

    def render(self) -> str:
        return f"{self.table} {self.key}: {self.what}{' ' + self.detail if self.detail else ''}"


def differences(table: str, columns: tuple[str, ...], want: dict[Normal, Normal],
                have: dict[Normal, Normal], limit: int = 1000) -> list[Difference]:
    out: list[Difference] = []
    for key, row in want.items():
        got = have.get(key)
        if got is None:
            out.append(Difference(table, key, "missing from the table"))
        elif got != row:
            cols = [f"{c}: table {g!r} != log {w!r}"
                    for c, g, w in zip(columns, got, row, strict=True) if g != w]
            out.append(Difference(table, key, "differs", "; ".join(cols)))
        if len(out) >= limit:
            return out
    for key in have.keys() - want.keys():
        out.append(Difference(table, key, "not in the log's fold"))
        if len(out) >= limit:
            break
    return out
