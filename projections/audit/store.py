"""The audit store: every execution event as the `WorkflowExecution` aggregate's events in
PostgreSQL, through the eventsourcing library's PostgreSQL process recorder.

Tables (in `settings.pg_schema`, made by the recorder's own `create_table`, see
docs/audit.md for why not an alembic revision): `audit_events` (the aggregate events:
originator id = `WorkflowExecution.create_id(execution_id)`, originator version = seq),
`audit_snapshots` (every `audit_snapshot_every` events), `audit_tracking` (one row per
`execution-events` partition: the last Kafka offset stored, written in the same transaction
as the events) and `audit_event_index` (execution id, seq, event id, type, time, causation,
correlation, dedup key: for lookups by event id, time, workflow and child executions; also
in the same transaction).
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import JSONTranscoder, ProcessRecorder, Tracking, Transcoding
from eventsourcing.postgres import PostgresProcessRecorder
from flowlog.aggregates.execution import events as ev
from flowlog.aggregates.execution.aggregate import WorkflowExecution
from flowlog.aggregates.execution.events import event_from_dict
from flowlog.aggregates.execution.state import ExecutionState
from flowlog.projections.audit.errors import AuditError
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from flowlog.settings import Settings

APP_NAME = "audit"  # table prefix: audit_events, audit_snapshots, audit_tracking
INDEX_TABLE = "audit_event_index"
COMMANDS_TABLE = "audit_commands"


class AuditStoreMissing(AuditError):
    """The audit store's tables do not exist (yet) in the schema asked for."""


class ExecutionStateAsDict(Transcoding):
    """Snapshots hold the aggregate's `ExecutionState` as its own JSON snapshot form."""

    type = ExecutionState
    name = "flowlog_execution_state"

    def encode(self, obj: ExecutionState) -> dict[str, Any]:
        return obj.to_dict()

    def decode(self, data: dict[str, Any]) -> ExecutionState:
        return ExecutionState.from_dict(data)


@dataclass(frozen=True, slots=True)
class IndexRow:
    execution_id: str
    seq: int
    event_id: str
    event_type: str
    occurred_at: datetime
    causation_id: str | None
    correlation_id: str | None
    workflow_id: str
    workflow_version: int
    node_id: str | None
    dedup_key: str | None

    @classmethod
    def of(cls, e: ev.ExecutionEvent) -> IndexRow:
        return cls(e.execution_id, e.seq, e.event_id, e.event_type, e.occurred_at,
                   e.causation_id, e.correlation_id, e.workflow_id, e.workflow_version,
                   getattr(e, "node_id", None), getattr(e, "dedup_key", None))


@dataclass(frozen=True, slots=True)
class CommandRow:
    """A record of the `commands` topic, with who sent it and why (the command gateway's
    `flowlog-actor` and `flowlog-reason` headers)."""

    event_id: str
    execution_id: str | None
    event_type: str
    node_id: str | None
    reason: str | None
    actor: str | None
    header_reason: str | None
    occurred_at: datetime | None
    topic: str
    kafka_partition: int
    kafka_offset: int


class AuditRecorder(PostgresProcessRecorder):
    """The library's process recorder, plus the event index written in the same
    transaction as the events and the tracking row."""

    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events",
                 tracking_table_name: str = "notification_tracking") -> None:
        super().__init__(datastore, events_table_name=events_table_name,
                         tracking_table_name=tracking_table_name)
        schema = Identifier(self.datastore.schema)
        table = Identifier(INDEX_TABLE)
        self.sql_create_statements.append(SQL(
            "CREATE TABLE IF NOT EXISTS {s}.{t} ("
            "execution_id text NOT NULL, seq bigint NOT NULL, event_id text NOT NULL, "
            "event_type text NOT NULL, occurred_at timestamptz NOT NULL, "
            "causation_id text, correlation_id text, workflow_id text NOT NULL, "
            "workflow_version int NOT NULL, node_id text, dedup_key text, "
            "PRIMARY KEY (execution_id, seq))").format(s=schema, t=table))
        for name, cols in (("event_id", "event_id"), ("causation", "causation_id"),
                           ("correlation", "correlation_id"),
                           ("started", "workflow_id, occurred_at")):
            self.sql_create_statements.append(SQL(
                "CREATE INDEX IF NOT EXISTS {i} ON {s}.{t} (" + cols + ")"
            ).format(i=Identifier(f"{INDEX_TABLE}_{name}_idx"), s=schema, t=table))
        self.sql_create_statements.append(SQL(
            "CREATE INDEX IF NOT EXISTS {i} ON {s}.{t} (dedup_key) WHERE dedup_key IS NOT NULL"
        ).format(i=Identifier(f"{INDEX_TABLE}_dedup_idx"), s=schema, t=table))
        self.sql_create_statements.append(SQL(
            "CREATE TABLE IF NOT EXISTS {s}.{t} ("
            "event_id text PRIMARY KEY, execution_id text, event_type text NOT NULL, "
            "node_id text, reason text, actor text, header_reason text, "
            "occurred_at timestamptz, topic text, kafka_partition int, kafka_offset bigint)"
        ).format(s=schema, t=Identifier(COMMANDS_TABLE)))
        self.sql_create_statements.append(SQL(
            "CREATE INDEX IF NOT EXISTS {i} ON {s}.{t} (execution_id)"
        ).format(i=Identifier(f"{COMMANDS_TABLE}_execution_idx"), s=schema,
                 t=Identifier(COMMANDS_TABLE)))
        self.insert_command_statement = SQL(
            "INSERT INTO {s}.{t} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (event_id) DO NOTHING").format(s=schema, t=Identifier(COMMANDS_TABLE))
        self.insert_index_statement = SQL(
            "INSERT INTO {s}.{t} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (execution_id, seq) DO NOTHING").format(s=schema, t=table)

    def _insert_events(self, curs: Any, stored_events: Any, **kwargs: Any) -> None:
        super()._insert_events(curs, stored_events, **kwargs)
        rows: Sequence[IndexRow] = kwargs.get("index_rows") or ()
        if rows:
            curs.executemany(self.insert_index_statement,
                             [tuple(getattr(r, f) for f in IndexRow.__slots__) for r in rows])
        commands: Sequence[CommandRow] = kwargs.get("command_rows") or ()
        if commands:
            curs.executemany(self.insert_command_statement,
                             [tuple(getattr(c, f) for f in CommandRow.__slots__)
                              for c in commands])


class AuditApplication(Application[uuid.UUID]):
    """The eventsourcing application whose repository rebuilds executions (snapshots)."""

    name = APP_NAME
    is_snapshotting_enabled = True

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(ExecutionStateAsDict())

    def construct_recorder(self) -> ProcessRecorder:
        return self.factory.process_recorder()


def application_env(settings: Settings, schema: str | None = None,
                    create_table: bool = True) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "PROCESS_RECORDER_TOPIC": "flowlog.projections.audit.store:AuditRecorder",
        "POSTGRES_DBNAME": settings.pg_database,
        "POSTGRES_HOST": settings.pg_host,
        "POSTGRES_PORT": str(settings.pg_port),
        "POSTGRES_USER": settings.pg_user,
        "POSTGRES_PASSWORD": settings.pg_password,
        "POSTGRES_SCHEMA": schema or settings.pg_schema,
        "POSTGRES_POOL_SIZE": "2",
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "30000",
        "CREATE_TABLE": "y" if create_table else "n",
    }


def _project(aggregate: Any, domain_events: Iterable[Any]) -> Any:
    """The library's `project_aggregate` without its per-event runtime Protocol check
    (`isinstance` against a Protocol: ~40% of a rebuild's time, measured)."""
    for domain_event in domain_events:
        aggregate = domain_event.mutate(aggregate)
    return aggregate


def execution_uuid(execution_id: str) -> uuid.UUID:
    return WorkflowExecution.create_id(execution_id)


class AuditStore:
    """Reads and writes of the audit store (one per process; thread-safe through the
    library's connection pool)."""

    def __init__(self, settings: Settings, schema: str | None = None, *,
                 readonly: bool = False) -> None:
        """`readonly` (the CLI, the API): create nothing; raise `AuditStoreMissing` when the
        projector never made the tables."""
        self.settings = settings
        self.schema = schema or settings.pg_schema
        with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
            if readonly:
                found = conn.execute("SELECT 1 FROM pg_tables WHERE schemaname = %s AND "
                                     "tablename = %s", (self.schema, INDEX_TABLE)).fetchone()
                if found is None:
                    raise AuditStoreMissing(
                        f"no audit store in schema {self.schema!r} (table {INDEX_TABLE} is "
                        "missing): start `flowlog worker audit`, which creates it and fills "
                        "it from execution-events")
                self.app = AuditApplication(env=application_env(settings, self.schema,
                                                                create_table=False))
            else:
                # CREATE ... IF NOT EXISTS races between processes starting at once (a
                # unique violation in pg_type): one creator at a time, per schema.
                key = zlib.crc32(f"flowlog-audit-ddl:{self.schema}".encode())
                conn.execute("SELECT pg_advisory_lock(%s)", (key,))
                try:
                    conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                        Identifier(self.schema)))
                    self.app = AuditApplication(env=application_env(settings, self.schema))
                finally:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        recorder = self.app.recorder
        assert isinstance(recorder, AuditRecorder)
        self.recorder = recorder
        self._index = SQL("{}.{}").format(Identifier(self.schema), Identifier(INDEX_TABLE))
        self._commands = SQL("{}.{}").format(Identifier(self.schema),
                                             Identifier(COMMANDS_TABLE))

    def close(self) -> None:
        self.app.close()

    # --- writing (the projector) ------------------------------------------------------
    def save(self, aggregates: Iterable[WorkflowExecution], tracking: Tracking,
             index_rows: Sequence[IndexRow]) -> None:
        """Store the aggregates' pending events, the index rows and the tracking position in
        one transaction (all or nothing)."""
        processing = ProcessingEvent[uuid.UUID](tracking=tracking)
        processing.collect_events(*aggregates, index_rows=index_rows)
        self.app._record(processing)  # what the library's process applications call

    def save_commands(self, rows: Sequence[CommandRow], tracking: Tracking) -> None:
        """Store command records and the partition's offset in one transaction."""
        processing = ProcessingEvent[uuid.UUID](tracking=tracking)
        processing.collect_events(command_rows=rows)
        self.app._record(processing)

    def commands(self, execution_id: str) -> dict[str, dict[str, Any]]:
        """The execution's command records by event id (who and why)."""
        rows = self._query("SELECT event_id, event_type, node_id, reason, actor, "
                           "header_reason, occurred_at FROM {cmd} WHERE execution_id = %s",
                           execution_id)
        return {str(r[0]): {"event_type": r[1], "node_id": r[2], "reason": r[3],
                            "actor": r[4], "header_reason": r[5], "occurred_at": r[6]}
                for r in rows}

    @staticmethod
    def snapshot_of(aggregate: WorkflowExecution) -> Any:
        """A snapshot of the aggregate now (its state copied: the fold goes on in place)."""
        snapshot = WorkflowExecution.Snapshot.take(aggregate)
        snapshot.state["state"] = aggregate.state.clone()
        return snapshot

    def put_snapshots(self, snapshots: Sequence[Any]) -> None:
        assert self.app.snapshots is not None
        self.app.snapshots.put(list(snapshots))

    def snapshot(self, aggregate: WorkflowExecution) -> None:
        self.put_snapshots([self.snapshot_of(aggregate)])

    def position(self, application_name: str) -> int | None:
        """The last Kafka offset stored for one partition (None: nothing yet)."""
        return self.recorder.max_tracking_id(application_name)

    def load(self, execution_id: str) -> WorkflowExecution | None:
        from eventsourcing.application import AggregateNotFoundError

        try:
            agg: Any = self.app.repository.get(execution_uuid(execution_id),
                                               projector_func=_project)
        except AggregateNotFoundError:
            return None
        assert isinstance(agg, WorkflowExecution)
        return agg

    # --- reading ----------------------------------------------------------------------
    def events(self, execution_id: str, upto: int | None = None) -> list[ev.ExecutionEvent]:
        """The execution's events in seq order (the first `upto`), from the store."""
        stored = self.recorder.select_events(execution_uuid(execution_id), lte=upto)
        out = []
        for s in stored:
            domain_event = self.app.mapper.to_domain_event(s)
            out.append(event_from_dict(domain_event.event))  # type: ignore[attr-defined]
        return out

    def state_at(self, execution_id: str, seq: int | None = None) -> ExecutionState | None:
        """The state after event `seq` (default: the last), from the newest snapshot at or
        before it plus the events after it; None when the execution is not stored."""
        from eventsourcing.application import AggregateNotFoundError

        try:
            agg: Any = self.app.repository.get(execution_uuid(execution_id), version=seq,
                                               projector_func=_project)
        except AggregateNotFoundError:
            return None
        assert isinstance(agg, WorkflowExecution)
        return agg.state

    def _query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with self.recorder.datastore.get_connection() as conn, \
                conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(SQL(sql).format(idx=self._index, cmd=self._commands), params)
            return list(cur.fetchall())

    def last_seq(self, execution_id: str) -> int:
        """The last stored seq of the execution (0: not stored)."""
        rows = self._query("SELECT max(seq) FROM {idx} WHERE execution_id = %s", execution_id)
        return int(rows[0][0] or 0)

    def seq_at_time(self, execution_id: str, at: datetime) -> int:
        rows = self._query("SELECT max(seq) FROM {idx} WHERE execution_id = %s "
                           "AND occurred_at <= %s", execution_id, at)
        return int(rows[0][0] or 0)

    def find_event(self, event_id: str) -> tuple[str, int] | None:
        """(execution id, seq) of an execution event."""
        rows = self._query("SELECT execution_id, seq FROM {idx} WHERE event_id = %s",
                           event_id)
        return (str(rows[0][0]), int(rows[0][1])) if rows else None

    def find_cause(self, causation_id: str) -> list[tuple[str, int]]:
        """The executions (and first seq) whose events an input id caused."""
        rows = self._query("SELECT execution_id, min(seq) FROM {idx} WHERE causation_id = %s "
                           "GROUP BY execution_id ORDER BY 1", causation_id)
        return [(str(r[0]), int(r[1])) for r in rows]

    def executions(self, workflow_id: str | None = None, since: datetime | None = None,
                   limit: int | None = None) -> list[str]:
        """Stored executions (by start time), optionally of one workflow and since a time."""
        sql = "SELECT execution_id FROM {idx} WHERE seq = 1"
        params: list[Any] = []
        if workflow_id is not None:
            sql += " AND workflow_id = %s"
            params.append(workflow_id)
        if since is not None:
            sql += " AND occurred_at >= %s"
            params.append(since)
        sql += " ORDER BY occurred_at, execution_id"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(limit)
        return [str(r[0]) for r in self._query(sql, *params)]

    def workflows(self) -> list[str]:
        return [str(r[0]) for r in self._query(
            "SELECT DISTINCT workflow_id FROM {idx} WHERE seq = 1 ORDER BY 1")]

    def children(self, execution_id: str) -> dict[str, str]:
        """Child executions by the parent's task key (their dedup key)."""
        rows = self._query("SELECT dedup_key, execution_id FROM {idx} WHERE seq = 1 AND "
                           "dedup_key LIKE %s", execution_id.replace("%", r"\%") + ":%")
        return {str(r[0]): str(r[1]) for r in rows}

    def count_events(self) -> int:
        return int(self._query("SELECT count(*) FROM {idx}")[0][0])
