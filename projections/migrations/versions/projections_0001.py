"""Projections: read models (workflows, versions, executions, triggers, node runs, the
events index), projector offsets and rejects, analytics facts and per-minute rollups.

The analytics form (TimescaleDB or plain PostgreSQL) is chosen here, by whether the
extension is loadable (see `projections/timescale.py`). No foreign keys and no sequences:
rebuild swaps these tables one by one (DESIGN.md section 7, docs/projections.md).

Revision ID: projections_0001
Revises: 0001_base
"""

from alembic import op
from flowlog.projections.timescale import FACTS_0001, PLAIN_ROLLUPS_0001, PROBE, TIMESCALE_0001
from sqlalchemy import text

revision = "projections_0001"
down_revision = "0001_base"
branch_labels = None
depends_on = None

READ_MODELS = """
CREATE TABLE workflows (
    workflow_id text PRIMARY KEY,
    name text,
    status text NOT NULL CHECK (status IN ('draft', 'active', 'paused', 'archived')),
    latest_version integer NOT NULL CHECK (latest_version >= 1),
    pause_reason text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE workflow_versions (
    workflow_id text NOT NULL,
    version integer NOT NULL CHECK (version >= 1),
    name text,
    definition jsonb NOT NULL,
    node_count integer NOT NULL,
    defined_at timestamptz NOT NULL,
    PRIMARY KEY (workflow_id, version)
);
CREATE TABLE workflow_executions (
    execution_id text PRIMARY KEY,
    workflow_id text NOT NULL,
    workflow_version integer NOT NULL,
    tenant text NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'queued', 'running', 'waiting',
        'incident', 'succeeded', 'failed', 'cancelled', 'rejected')),
    phase text NOT NULL,
    trigger_id text,
    trigger_source text,
    dedup_key text,
    correlation_id text,
    input jsonb,
    output jsonb,
    error jsonb,
    failed_node text,
    node_status jsonb NOT NULL DEFAULT '{}',
    incidents jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    duration_ms bigint,
    node_runs integer NOT NULL DEFAULT 0,
    retries integer NOT NULL DEFAULT 0,
    dead_letters integer NOT NULL DEFAULT 0,
    model_calls integer NOT NULL DEFAULT 0,
    tool_calls integer NOT NULL DEFAULT 0,
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    cost_usd double precision NOT NULL DEFAULT 0,
    last_seq bigint NOT NULL CHECK (last_seq >= 1),
    last_event_at timestamptz NOT NULL
);
CREATE INDEX workflow_executions_workflow ON workflow_executions (workflow_id, created_at DESC);
CREATE INDEX workflow_executions_status ON workflow_executions (status, created_at DESC);
CREATE INDEX workflow_executions_tenant ON workflow_executions (tenant, created_at DESC);
CREATE TABLE triggers (
    trigger_id text NOT NULL,
    execution_id text NOT NULL,
    workflow_id text NOT NULL,
    workflow_version integer NOT NULL,
    tenant text NOT NULL,
    source text,
    dedup_key text,
    input jsonb,
    outcome text NOT NULL CHECK (outcome IN ('started', 'queued', 'rejected')),
    reason text,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (execution_id)
);
CREATE INDEX triggers_trigger ON triggers (trigger_id);
CREATE INDEX triggers_workflow ON triggers (workflow_id, received_at DESC);
CREATE TABLE node_runs (
    execution_id text NOT NULL,
    node_id text NOT NULL,
    attempt integer NOT NULL CHECK (attempt >= 0),
    node_type text,
    status text NOT NULL,
    task_key text,
    workflow_id text NOT NULL,
    tenant text NOT NULL,
    created_at timestamptz NOT NULL,
    scheduled_at timestamptz,
    started_at timestamptz,
    finished_at timestamptz,
    duration_ms bigint,
    error jsonb,
    output_summary text,
    model text,
    model_calls integer NOT NULL DEFAULT 0,
    tool_calls integer NOT NULL DEFAULT 0,
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    cost_usd double precision NOT NULL DEFAULT 0,
    last_seq bigint NOT NULL,
    PRIMARY KEY (execution_id, node_id, attempt)
);
CREATE INDEX node_runs_type ON node_runs (node_type, status);
CREATE TABLE execution_events (
    execution_id text NOT NULL,
    seq bigint NOT NULL CHECK (seq >= 1),
    event_id text NOT NULL,
    event_type text NOT NULL,
    occurred_at timestamptz NOT NULL,
    node_id text,
    causation_id text,
    correlation_id text,
    kafka_topic text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset bigint NOT NULL,
    PRIMARY KEY (execution_id, seq)
);
CREATE INDEX execution_events_type ON execution_events (event_type, occurred_at DESC);
CREATE INDEX execution_events_correlation ON execution_events (correlation_id);
CREATE TABLE projection_offsets (
    projector text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projector, topic, partition)
);
CREATE TABLE projection_rejects (
    projector text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    kafka_offset bigint NOT NULL,
    execution_id text,
    event_type text,
    reason text NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projector, topic, partition, kafka_offset)
);
"""


def upgrade() -> None:
    op.execute(READ_MODELS)
    op.execute(FACTS_0001)
    timescale = bool(op.get_bind().execute(text(PROBE)).scalar())
    if timescale:  # not exercised on this machine (no TimescaleDB); see timescale.py
        op.execute(TIMESCALE_0001)
    else:
        op.execute(PLAIN_ROLLUPS_0001)


def downgrade() -> None:
    for name in ("rollup_dirty", "rollup_llm_1m", "rollup_nodes_1m", "rollup_executions_1m",
                 "llm_call_facts", "node_run_facts", "execution_facts", "projection_rejects",
                 "projection_offsets", "execution_events", "node_runs", "triggers",
                 "workflow_executions", "workflow_versions", "workflows"):
        op.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
