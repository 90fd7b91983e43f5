"""SQL the projectors share: staged upserts (COPY into a temp table, then one
INSERT … ON CONFLICT), offsets and rejects, for both drivers (asyncpg: ``$n``; psycopg:
``%s``). Table names are unqualified: every connection runs with ``search_path`` set to
the schema it projects into (the live schema, or a rebuild's shadow)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cache
from operator import itemgetter
from typing import Any

from flowlog.projections.fold import JSON_COLUMNS, Row, json_text

#: Key columns of each table a projector upserts into; the seq-guarded ones update a row
#: only when the new `last_seq` is newer (a late or duplicate write changes nothing).
KEYS: dict[str, tuple[str, ...]] = {
    "workflow_executions": ("execution_id",),
    "node_runs": ("execution_id", "node_id", "attempt"),
    "execution_events": ("execution_id", "seq"),
    "triggers": ("execution_id",),
    "workflows": ("workflow_id",),
    "workflow_versions": ("workflow_id", "version"),
    "execution_facts": ("created_at", "execution_id"),
    "node_run_facts": ("created_at", "execution_id", "node_id", "attempt"),
    "llm_call_facts": ("occurred_at", "execution_id", "seq"),
}
SEQ_GUARDED = frozenset({"workflow_executions", "node_runs", "execution_facts",
                         "node_run_facts"})


def stage_name(table: str) -> str:
    return f"_stage_{table}"


def stage_ddl(table: str) -> str:
    """A session temp table shaped like ``table``, emptied at every commit."""
    return (f"CREATE TEMP TABLE IF NOT EXISTS {stage_name(table)} "
            f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")


def merge_sql(table: str, columns: Sequence[str]) -> str:
    """Move the staged rows of ``table`` into it: insert, or update by key (newer seq only),
    or do nothing (insert-only tables)."""
    cols = ", ".join(columns)
    key = KEYS[table]
    head = (f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage_name(table)} "
            f"ON CONFLICT ({', '.join(key)}) ")
    if table in SEQ_GUARDED or table == "workflows":
        sets = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        guard = (f" WHERE {table}.last_seq < excluded.last_seq" if table in SEQ_GUARDED
                 else f" WHERE {table}.updated_at <= excluded.updated_at")
        return head + f"DO UPDATE SET {sets}{guard}"
    return head + "DO NOTHING"


def to_tuple(row: Row, columns: Sequence[str]) -> tuple[Any, ...]:
    """A row as the tuple COPY writes (JSON columns as canonical JSON text)."""
    return _tupler(tuple(columns))(row)


@cache
def _tupler(columns: tuple[str, ...]) -> Callable[[Row], tuple[Any, ...]]:
    """A fast row → tuple function for one column list (rows are complete dicts)."""
    get = itemgetter(*columns)
    json_at = [i for i, c in enumerate(columns) if c in JSON_COLUMNS or c == "definition"]
    if len(columns) == 1:
        return lambda row: (row[columns[0]],)
    if not json_at:
        return get

    def tupled(row: Row) -> tuple[Any, ...]:
        values = list(get(row))
        for i in json_at:
            values[i] = json_text(values[i])
        return tuple(values)

    return tupled


# --- offsets and rejects -----------------------------------------------------------------

LOCK_OFFSETS_PG = ("SELECT topic, partition, next_offset FROM projection_offsets "
                   "WHERE projector = $1 AND topic = ANY($2::text[]) FOR UPDATE")
READ_OFFSETS_PG = ("SELECT topic, partition, next_offset FROM projection_offsets "
                   "WHERE projector = $1")
SAVE_OFFSETS_PG = (
    "INSERT INTO projection_offsets (projector, topic, partition, next_offset, updated_at) "
    "SELECT $1, t, p, o, now() FROM unnest($2::text[], $3::int[], $4::bigint[]) AS u(t, p, o) "
    "ON CONFLICT (projector, topic, partition) DO UPDATE SET next_offset = "
    "greatest(projection_offsets.next_offset, excluded.next_offset), updated_at = now()")
SAVE_REJECTS_PG = (
    "INSERT INTO projection_rejects (projector, topic, partition, kafka_offset, execution_id, "
    "event_type, reason) SELECT $1, t, p, o, x, e, r FROM unnest($2::text[], $3::int[], "
    "$4::bigint[], $5::text[], $6::text[], $7::text[]) AS u(t, p, o, x, e, r) "
    "ON CONFLICT DO NOTHING")


def pyformat(sql: str) -> str:
    """The asyncpg statement for psycopg (``$n`` placeholders become ``%s``, in order)."""
    import re

    return re.sub(r"\$\d+", "%s", sql)


ORIGIN = "timestamptz '2000-01-01 00:00:00+00'"
_BIN = "date_bin('1 minute', {col}, " + ORIGIN + ")"
_IN = "{col} >= %(lo)s AND {col} < %(hi)s AND " + _BIN + " = ANY(%(m)s::timestamptz[])"

#: The plain form's rollup job, statement by statement, in one transaction: take the dirty
#: minutes, then recompute each rollup for them (psycopg parameters: m, the minutes;
#: lo and hi, their span, so the facts' time index narrows the scan).
TAKE_DIRTY = "DELETE FROM rollup_dirty RETURNING bucket"
ROLLUP_STATEMENTS: tuple[str, ...] = (
    "DELETE FROM rollup_executions_1m WHERE bucket = ANY(%(m)s::timestamptz[])",
    "DELETE FROM rollup_nodes_1m WHERE bucket = ANY(%(m)s::timestamptz[])",
    "DELETE FROM rollup_llm_1m WHERE bucket = ANY(%(m)s::timestamptz[])",
    "INSERT INTO rollup_executions_1m SELECT " + _BIN.format(col="created_at") + """,
       workflow_id, tenant, status, count(*),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms),
       sum(retries), sum(dead_letters), sum(input_tokens), sum(output_tokens), sum(cost_usd)
     FROM execution_facts WHERE """ + _IN.format(col="created_at") + " GROUP BY 1, 2, 3, 4",
    "INSERT INTO rollup_nodes_1m SELECT " + _BIN.format(col="created_at") + """,
       workflow_id, tenant, coalesce(node_type, 'unknown'), status, count(*),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms),
       sum(model_calls), sum(input_tokens), sum(output_tokens), sum(cost_usd)
     FROM node_run_facts WHERE """ + _IN.format(col="created_at") + " GROUP BY 1, 2, 3, 4, 5",
    "INSERT INTO rollup_llm_1m SELECT " + _BIN.format(col="occurred_at") + """,
       workflow_id, tenant, provider, model, count(*), sum(input_tokens), sum(output_tokens),
       sum(cost_usd), percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)
     FROM llm_call_facts WHERE """ + _IN.format(col="occurred_at") + " GROUP BY 1, 2, 3, 4, 5",
)
MARK_DIRTY = ("INSERT INTO rollup_dirty (bucket) SELECT unnest(%s::timestamptz[]) "
              "ON CONFLICT DO NOTHING")


def minute(at: datetime) -> datetime:
    """The rollup bucket of a time (``date_bin('1 minute', at, ORIGIN)``), in UTC."""
    return at.astimezone(UTC).replace(second=0, microsecond=0)
