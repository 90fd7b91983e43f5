"""Search attributes in PostgreSQL: declarations, values, the backfill and the live queue.

* **Declarations** (`search_attributes`): name, type, expression, backfill state
  (`backfilling` → `ready`; `failed` when the expression no longer compiles), the backfill's
  cursor and counts. Written by the operator's CLI (`flowlog search-attributes`), never by
  the query API (read-only).
* **Values** (`search_attribute_values`): one row per attribute and execution, the value in
  the column of its type (or an `error`), with the `last_seq` it was evaluated at; an upsert
  only replaces an evaluation at an older or equal seq, so re-evaluating is idempotent and a
  late backfill never overwrites a newer live value.
* **Live path**: the read-model projector queues each execution it changes
  (`mark_pending`, in its own transaction, only while an attribute is declared); the
  evaluator (`drain_pending`) evaluates every declared attribute for the queued executions
  once the audit store holds their events up to the queued seq.
* **Backfill** (`backfill_batch`): executions in `execution_id` order, a batch per
  transaction that also advances the cursor and counts (resumable after a crash, nothing
  counted twice). An execution whose events the audit store does not hold yet is queued
  for the live path instead.

Events come from the audit store (`projections/audit/store.py`, filled by `flowlog worker
audit`): the only place in PostgreSQL that keeps each event's data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from flowlog.aggregates.errors import ExpressionError
from flowlog.aggregates.execution import events as ev
from flowlog.projections import search_attributes as sa
from psycopg.rows import dict_row

log = logging.getLogger(__name__)

MARK_PENDING_PG = (
    "INSERT INTO search_attribute_pending (execution_id, last_seq) "
    "SELECT u.e, u.s FROM unnest($1::text[], $2::bigint[]) AS u(e, s) "
    "WHERE EXISTS (SELECT 1 FROM search_attributes) "
    "ON CONFLICT (execution_id) DO UPDATE SET "
    "last_seq = greatest(search_attribute_pending.last_seq, excluded.last_seq), "
    "queued_at = now()")

UPSERT_VALUE = (
    "INSERT INTO search_attribute_values (attribute, execution_id, last_seq, v_keyword, "
    "v_int, v_double, v_bool, v_datetime, error, evaluated_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now()) "
    "ON CONFLICT (attribute, execution_id) DO UPDATE SET last_seq = excluded.last_seq, "
    "v_keyword = excluded.v_keyword, v_int = excluded.v_int, v_double = excluded.v_double, "
    "v_bool = excluded.v_bool, v_datetime = excluded.v_datetime, error = excluded.error, "
    "evaluated_at = now() WHERE search_attribute_values.last_seq <= excluded.last_seq")

#: the events of each of some executions, in seq order (missing: none stored)
EventSource = Callable[[Sequence[str]], dict[str, list[ev.ExecutionEvent]]]


def one_by_one(events: Callable[[str], list[ev.ExecutionEvent]]) -> EventSource:
    """An EventSource from a per-execution function (e.g. `AuditStore.events`)."""
    return lambda ids: {i: events(i) for i in ids}


def audit_source(audit: Any) -> EventSource:
    """The events of a batch of executions from the audit store in ONE query (the store's
    own `events` is a query per execution), decoded by the store's own mapper."""
    from eventsourcing.persistence import StoredEvent
    from flowlog.aggregates.execution.events import event_from_dict
    from flowlog.projections.audit.store import execution_uuid
    from psycopg.sql import SQL, Identifier

    rec = audit.recorder
    statement = SQL("SELECT originator_id, originator_version, topic, state FROM {s}.{t} "
                    "WHERE originator_id = ANY(%s) ORDER BY originator_id, "
                    "originator_version").format(s=Identifier(rec.datastore.schema),
                                                 t=Identifier(rec.events_table_name))

    def events(ids: Sequence[str]) -> dict[str, list[ev.ExecutionEvent]]:
        by_uuid = {execution_uuid(i): i for i in ids}
        out: dict[str, list[ev.ExecutionEvent]] = {i: [] for i in ids}
        with rec.datastore.get_connection() as conn, conn.cursor() as cur:
            cur.execute(statement, [list(by_uuid)])
            rows = cur.fetchall()
        for r in rows:
            stored = StoredEvent(originator_id=r["originator_id"],
                                 originator_version=r["originator_version"],
                                 topic=r["topic"], state=bytes(r["state"]))
            domain = audit.app.mapper.to_domain_event(stored)
            out[by_uuid[r["originator_id"]]].append(event_from_dict(domain.event))
        return out

    return events


async def mark_pending(conn: Any, executions: Sequence[tuple[str, int]]) -> None:
    """Queue changed executions for evaluation (asyncpg, inside the read-model projector's
    transaction). A no-op statement while no attribute is declared."""
    if executions:
        await conn.execute(MARK_PENDING_PG, [e for e, _ in executions],
                           [s for _, s in executions])


@dataclass(frozen=True, slots=True)
class AttributeRow:
    name: str
    type: str
    expression: str
    state: str
    done: int
    total: int
    errors: int
    waiting: int
    last_error: str | None
    declared_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}


def connect(dsn: str, schema: str) -> psycopg.Connection:
    """An autocommit connection on `schema` (the functions here open their transactions)."""
    return psycopg.connect(dsn, autocommit=True, options=f"-c search_path={schema}")


def declare(conn: psycopg.Connection, decl: sa.Declaration) -> AttributeRow:
    """Store a checked declaration (state `backfilling`); SearchAttributeError when the
    name is taken. `conn` is in autocommit mode (see `connect`)."""
    with conn.transaction():
        # waits for read-model transactions that already ran `mark_pending` (ROW EXCLUSIVE
        # on the queue): every later one sees this declaration and queues its executions,
        # every earlier one has committed, so the backfill sees its executions
        conn.execute("LOCK TABLE search_attribute_pending IN SHARE MODE")
        total = conn.execute("SELECT count(*) FROM workflow_executions").fetchone()
        try:
            conn.execute("INSERT INTO search_attributes (name, type, expression, total) "
                         "VALUES (%s, %s, %s, %s)",
                         (decl.name, decl.type, decl.expression.source,
                          total[0] if total else 0))
        except psycopg.errors.UniqueViolation:
            raise sa.SearchAttributeError(
                f"search attribute {decl.name!r} is already declared: remove it first "
                f"(flowlog search-attributes remove {decl.name}) or choose another name"
            ) from None
    found = get(conn, decl.name)
    assert found is not None
    return found


def remove(conn: psycopg.Connection, name: str) -> bool:
    """Drop a declaration and its values; False when there was none."""
    with conn.transaction():
        cur = conn.execute("DELETE FROM search_attributes WHERE name = %s", (name,))
        if not conn.execute("SELECT 1 FROM search_attributes LIMIT 1").fetchone():
            conn.execute("DELETE FROM search_attribute_pending")
        return cur.rowcount > 0


LIST_SQL = (
    "SELECT a.name, a.type, a.expression, a.state, a.done, a.total, "
    "(SELECT count(*) FROM search_attribute_values v WHERE v.attribute = a.name "
    " AND v.error IS NOT NULL) AS errors, a.waiting, a.last_error, a.declared_at, "
    "a.updated_at FROM search_attributes a")


def list_attributes(conn: psycopg.Connection) -> list[AttributeRow]:
    with conn.cursor(row_factory=dict_row) as cur:
        return [AttributeRow(**r) for r in cur.execute(LIST_SQL + " ORDER BY a.name")]


def get(conn: psycopg.Connection, name: str) -> AttributeRow | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(LIST_SQL + " WHERE a.name = %s", (name,)).fetchone()
    return AttributeRow(**row) if row else None


def declarations(conn: psycopg.Connection) -> list[sa.Declaration]:
    """Every declared attribute, compiled (a row that no longer compiles is marked
    `failed` with the reason and left out)."""
    out = []
    for name, type_, source in conn.execute(
            "SELECT name, type, expression FROM search_attributes ORDER BY name"):
        try:
            out.append(sa.Declaration(name, type_, sa.compile_expression(source)))
        except ExpressionError as exc:
            conn.execute("UPDATE search_attributes SET state = 'failed', last_error = %s, "
                         "updated_at = now() WHERE name = %s", (str(exc), name))
    return out


def _params(decl: sa.Declaration, execution_id: str, seq: int, out: sa.Outcome
            ) -> tuple[Any, ...]:
    values: dict[str, Any] = dict.fromkeys(sa.COLUMN.values())
    if out.value is not None:
        values[decl.column] = out.value
    return (decl.name, execution_id, seq, values["v_keyword"], values["v_int"],
            values["v_double"], values["v_bool"], values["v_datetime"], out.error)


def evaluate_rows(decls: Sequence[sa.Declaration], execution_id: str,
                  events: list[ev.ExecutionEvent]) -> list[tuple[Any, ...]]:
    """The value rows of one execution for `decls` (evaluation errors become rows too)."""
    variables = sa.activation(events)
    seq = events[-1].seq if events else 0
    return [_params(d, execution_id, seq, sa.evaluate(d, variables, execution_id))
            for d in decls]


@dataclass
class BatchResult:
    evaluated: int = 0
    waiting: int = 0  # queued for the live path: the audit store is behind
    finished: bool = False


def backfill_batch(conn: psycopg.Connection, events_of: EventSource, name: str,
                   size: int = 200) -> BatchResult:
    """Evaluate attribute `name` for the next `size` executions after its cursor, write the
    values and advance the cursor and counts, in one transaction. `finished` once no
    execution is left (the state is then `ready`)."""
    res = BatchResult()
    with conn.transaction():
        row = conn.execute("SELECT type, expression, backfill_cursor, state FROM "
                           "search_attributes WHERE name = %s FOR UPDATE", (name,)).fetchone()
        if row is None:
            raise sa.SearchAttributeError(
                f"search attribute {name!r} is not declared (flowlog search-attributes list)")
        type_, source, cursor, state = row
        if state != "backfilling":
            res.finished = True
            return res
        decl = sa.Declaration(name, type_, sa.compile_expression(source))
        todo = conn.execute("SELECT execution_id, last_seq FROM workflow_executions WHERE "
                            "execution_id > %s ORDER BY execution_id LIMIT %s",
                            (cursor, size)).fetchall()
        rows: list[tuple[Any, ...]] = []
        behind: list[tuple[str, int]] = []
        histories = events_of([t[0] for t in todo])
        for execution_id, last_seq in todo:
            events = histories.get(execution_id)
            if not events or events[-1].seq < last_seq:
                behind.append((execution_id, last_seq))
                continue
            rows.extend(evaluate_rows([decl], execution_id, events))
        with conn.cursor() as cur:
            if rows:
                cur.executemany(UPSERT_VALUE, rows)
            if behind:
                cur.executemany(
                    "INSERT INTO search_attribute_pending (execution_id, last_seq) "
                    "VALUES (%s, %s) ON CONFLICT (execution_id) DO UPDATE SET last_seq = "
                    "greatest(search_attribute_pending.last_seq, excluded.last_seq)", behind)
        res.evaluated, res.waiting = len(rows), len(behind)
        res.finished = len(todo) < size
        total = conn.execute("SELECT count(*) FROM workflow_executions").fetchone()
        conn.execute(
            "UPDATE search_attributes SET backfill_cursor = %s, done = done + %s, "
            "waiting = waiting + %s, total = greatest(%s, done + %s), state = %s, "
            "updated_at = now() WHERE name = %s",
            (todo[-1][0] if todo else cursor, len(todo), len(behind),
             total[0] if total else 0, len(todo),
             "ready" if res.finished else "backfilling", name))
    return res


def backfill(conn: psycopg.Connection, events_of: EventSource, name: str, size: int = 200,
             on_batch: Callable[[BatchResult], None] | None = None) -> AttributeRow:
    """Run the backfill of `name` to the end (resumes from its stored cursor); `on_batch`
    is called after each committed batch (progress bars; tests use it to crash)."""
    while True:
        res = backfill_batch(conn, events_of, name, size)
        if on_batch is not None:
            on_batch(res)
        if res.finished:
            break
    found = get(conn, name)
    assert found is not None
    return found


def drain_pending(conn: psycopg.Connection, events_of: EventSource, limit: int = 200
                  ) -> tuple[int, int]:
    """Evaluate every declared attribute for up to `limit` queued executions whose events
    the audit store holds up to the queued seq; returns (evaluated, still waiting)."""
    queued = conn.execute("SELECT execution_id, last_seq FROM search_attribute_pending "
                          "ORDER BY queued_at LIMIT %s", (limit,)).fetchall()
    if not queued:
        return 0, 0
    done = waiting = 0
    with conn.transaction():
        decls = declarations(conn)
        rows: list[tuple[Any, ...]] = []
        cleared: list[tuple[str, int]] = []
        histories = events_of([q[0] for q in queued])
        for execution_id, last_seq in queued:
            events = histories.get(execution_id)
            if not events or events[-1].seq < last_seq:
                waiting += 1
                continue
            rows.extend(evaluate_rows(decls, execution_id, events))
            cleared.append((execution_id, events[-1].seq))
            done += 1
        with conn.cursor() as cur:
            if rows:
                cur.executemany(UPSERT_VALUE, rows)
            if cleared:
                # only what was evaluated: a newer seq queued meanwhile stays queued
                cur.executemany("DELETE FROM search_attribute_pending WHERE execution_id = %s "
                                "AND last_seq <= %s", cleared)
        if cleared:
            conn.execute("UPDATE search_attributes SET waiting = 0 WHERE waiting > 0 AND NOT "
                         "EXISTS (SELECT 1 FROM search_attribute_pending)")
    return done, waiting
