"""Query API indexes: every list query of `api/query` is a keyset scan on an index whose
leading column is the tenant (the caller's scope) or the sort key (an all-tenants admin).

The ingress tables' indexes are in api_0002 (which depends on ingress_0001; alembic cannot
take two depends_on from two branches in one revision).

Revision ID: api_0001
Revises: 0001_base
"""

from alembic import op

revision = "api_0001"
down_revision = "0001_base"
branch_labels = ("api",)
depends_on = "projections_0001"

INDEXES = {
    # executions: (tenant | nothing) + filter column + sort key + id (the keyset tie-break)
    "api_x_tenant_created": "workflow_executions (tenant, created_at, execution_id)",
    "api_x_created": "workflow_executions (created_at, execution_id)",
    "api_x_tenant_wf_created": "workflow_executions (tenant, workflow_id, created_at, "
                               "execution_id)",
    "api_x_tenant_status_created": "workflow_executions (tenant, status, created_at, "
                                   "execution_id)",
    "api_x_tenant_source_created": "workflow_executions (tenant, trigger_source, created_at, "
                                   "execution_id)",
    "api_x_tenant_last_event": "workflow_executions (tenant, last_event_at, execution_id)",
    "api_x_last_event": "workflow_executions (last_event_at, execution_id)",
    "api_x_wf_created": "workflow_executions (workflow_id, created_at, execution_id)",
    "api_x_status_created": "workflow_executions (status, created_at, execution_id)",
    "api_x_source_created": "workflow_executions (trigger_source, created_at, execution_id)",
    # node runs, triggers
    "api_nr_tenant_created": "node_runs (tenant, created_at, execution_id, node_id, attempt)",
    "api_nr_created": "node_runs (created_at, execution_id, node_id, attempt)",
    "api_nr_tenant_type_created": "node_runs (tenant, node_type, created_at, execution_id, "
                                  "node_id, attempt)",
    "api_tr_tenant_received": "triggers (tenant, received_at, execution_id)",
    "api_tr_received": "triggers (received_at, execution_id)",
    # analytics over a range, per tenant
    "api_xf_tenant_created": "execution_facts (tenant, created_at)",
    "api_nf_tenant_created": "node_run_facts (tenant, created_at)",
    "api_nf_created": "node_run_facts (created_at)",
    "api_lf_tenant_occurred": "llm_call_facts (tenant, occurred_at)",
}


def upgrade() -> None:
    for name, target in INDEXES.items():
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")


def downgrade() -> None:
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
