"""The analytics tables' SQL, in its two forms, chosen at migration time.

* ``PLAIN_*``: plain PostgreSQL. Facts are ordinary tables; the per-minute rollups are
  tables the rollup job (`projections.analytics.run_rollups`) recomputes for the minutes
  the analytics projector marked dirty (`date_bin('1 minute', ...)`). Tested here.
* ``TIMESCALE_*``: the TimescaleDB extension is available. Facts become hypertables (chunks
  of one day) with compression after 7 days and retention of 90; the rollups are continuous
  aggregates of the same names and columns with a refresh policy, so readers query the
  same relations either way. **Not exercised on this machine** (no TimescaleDB here); the
  compose file's TimescaleDB image runs it for Docker users.

A revision imports the constants of its own number; a released constant is never edited
(a later revision adds new ones), like the revisions themselves.
"""

from __future__ import annotations

#: The facts tables (both forms). Primary keys begin with the time column, as
#: hypertables require.
FACTS_0001 = """
CREATE TABLE execution_facts (
    execution_id text NOT NULL,
    workflow_id text NOT NULL,
    workflow_version integer NOT NULL,
    tenant text NOT NULL,
    status text NOT NULL,
    phase text NOT NULL,
    trigger_source text,
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
    last_seq bigint NOT NULL,
    last_event_at timestamptz NOT NULL,
    PRIMARY KEY (created_at, execution_id)
);
CREATE INDEX execution_facts_execution ON execution_facts (execution_id);
CREATE TABLE node_run_facts (
    execution_id text NOT NULL,
    node_id text NOT NULL,
    attempt integer NOT NULL,
    node_type text,
    status text NOT NULL,
    workflow_id text NOT NULL,
    tenant text NOT NULL,
    created_at timestamptz NOT NULL,
    scheduled_at timestamptz,
    started_at timestamptz,
    finished_at timestamptz,
    duration_ms bigint,
    model text,
    model_calls integer NOT NULL DEFAULT 0,
    tool_calls integer NOT NULL DEFAULT 0,
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    cost_usd double precision NOT NULL DEFAULT 0,
    last_seq bigint NOT NULL,
    PRIMARY KEY (created_at, execution_id, node_id, attempt)
);
CREATE INDEX node_run_facts_execution ON node_run_facts (execution_id);
CREATE TABLE llm_call_facts (
    execution_id text NOT NULL,
    seq bigint NOT NULL,
    occurred_at timestamptz NOT NULL,
    workflow_id text NOT NULL,
    tenant text NOT NULL,
    node_id text NOT NULL,
    attempt integer NOT NULL,
    provider text NOT NULL,
    model text NOT NULL,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    cost_usd double precision NOT NULL,
    latency_ms bigint NOT NULL,
    PRIMARY KEY (occurred_at, execution_id, seq)
);
"""

#: Plain PostgreSQL rollups: tables the rollup job fills, and the dirty-minute queue.
PLAIN_ROLLUPS_0001 = """
CREATE TABLE rollup_executions_1m (
    bucket timestamptz NOT NULL,
    workflow_id text NOT NULL,
    tenant text NOT NULL,
    status text NOT NULL,
    executions bigint NOT NULL,
    duration_p50_ms double precision,
    duration_p95_ms double precision,
    duration_p99_ms double precision,
    retries bigint NOT NULL,
    dead_letters bigint NOT NULL,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    cost_usd double precision NOT NULL,
    PRIMARY KEY (bucket, workflow_id, tenant, status)
);
CREATE TABLE rollup_nodes_1m (
    bucket timestamptz NOT NULL,
    workflow_id text NOT NULL,
    tenant text NOT NULL,
    node_type text NOT NULL,
    status text NOT NULL,
    runs bigint NOT NULL,
    duration_p50_ms double precision,
    duration_p95_ms double precision,
    duration_p99_ms double precision,
    model_calls bigint NOT NULL,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    cost_usd double precision NOT NULL,
    PRIMARY KEY (bucket, workflow_id, tenant, node_type, status)
);
CREATE TABLE rollup_llm_1m (
    bucket timestamptz NOT NULL,
    workflow_id text NOT NULL,
    tenant text NOT NULL,
    provider text NOT NULL,
    model text NOT NULL,
    calls bigint NOT NULL,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    cost_usd double precision NOT NULL,
    latency_p95_ms double precision,
    PRIMARY KEY (bucket, workflow_id, tenant, provider, model)
);
CREATE TABLE rollup_dirty (
    bucket timestamptz PRIMARY KEY
);
"""

#: TimescaleDB: hypertables, continuous aggregates (same names and columns as the plain
#: rollup tables), refresh, compression and retention policies. Not exercised here.
TIMESCALE_0001 = """
CREATE EXTENSION IF NOT EXISTS timescaledb;
SELECT create_hypertable('execution_facts', 'created_at', chunk_time_interval => interval '1 day');
SELECT create_hypertable('node_run_facts', 'created_at', chunk_time_interval => interval '1 day');
SELECT create_hypertable('llm_call_facts', 'occurred_at', chunk_time_interval => interval '1 day');
CREATE MATERIALIZED VIEW rollup_executions_1m WITH (timescaledb.continuous) AS
SELECT time_bucket('1 minute', created_at) AS bucket, workflow_id, tenant, status,
       count(*) AS executions,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS duration_p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS duration_p95_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) AS duration_p99_ms,
       sum(retries) AS retries, sum(dead_letters) AS dead_letters,
       sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(cost_usd) AS cost_usd
FROM execution_facts GROUP BY 1, 2, 3, 4 WITH NO DATA;
CREATE MATERIALIZED VIEW rollup_nodes_1m WITH (timescaledb.continuous) AS
SELECT time_bucket('1 minute', created_at) AS bucket, workflow_id, tenant,
       coalesce(node_type, 'unknown') AS node_type, status, count(*) AS runs,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS duration_p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS duration_p95_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) AS duration_p99_ms,
       sum(model_calls) AS model_calls, sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost_usd
FROM node_run_facts GROUP BY 1, 2, 3, 4, 5 WITH NO DATA;
CREATE MATERIALIZED VIEW rollup_llm_1m WITH (timescaledb.continuous) AS
SELECT time_bucket('1 minute', occurred_at) AS bucket, workflow_id, tenant, provider, model,
       count(*) AS calls, sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost_usd,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS latency_p95_ms
FROM llm_call_facts GROUP BY 1, 2, 3, 4, 5 WITH NO DATA;
SELECT add_continuous_aggregate_policy('rollup_executions_1m', start_offset => interval '1 day',
       end_offset => interval '1 minute', schedule_interval => interval '1 minute');
SELECT add_continuous_aggregate_policy('rollup_nodes_1m', start_offset => interval '1 day',
       end_offset => interval '1 minute', schedule_interval => interval '1 minute');
SELECT add_continuous_aggregate_policy('rollup_llm_1m', start_offset => interval '1 day',
       end_offset => interval '1 minute', schedule_interval => interval '1 minute');
ALTER TABLE execution_facts SET (timescaledb.compress,
      timescaledb.compress_segmentby = 'workflow_id');
ALTER TABLE node_run_facts SET (timescaledb.compress,
      timescaledb.compress_segmentby = 'workflow_id');
ALTER TABLE llm_call_facts SET (timescaledb.compress, timescaledb.compress_segmentby = 'model');
SELECT add_compression_policy('execution_facts', interval '7 days');
SELECT add_compression_policy('node_run_facts', interval '7 days');
SELECT add_compression_policy('llm_call_facts', interval '7 days');
SELECT add_retention_policy('execution_facts', interval '90 days');
SELECT add_retention_policy('node_run_facts', interval '90 days');
SELECT add_retention_policy('llm_call_facts', interval '90 days');
CREATE TABLE rollup_dirty (bucket timestamptz PRIMARY KEY);
"""

#: Whether the extension can be used here (available to CREATE EXTENSION, or created).
PROBE = ("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') "
         "AND EXISTS (SELECT 1 FROM pg_settings WHERE name = 'shared_preload_libraries' "
         "AND setting LIKE '%timescaledb%')")
