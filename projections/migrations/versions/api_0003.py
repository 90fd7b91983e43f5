"""Query API indexes: node runs by workflow and by model (found by the EXPLAIN test on
100,000 executions: an all-tenants admin's node-run list by workflow read the whole table).

Revision ID: api_0003
Revises: api_0002
"""

from alembic import op

revision = "api_0003"
down_revision = "api_0002"
branch_labels = None
depends_on = None

INDEXES = {
    "api_nr_wf_created": "node_runs (workflow_id, created_at, execution_id, node_id, attempt)",
    "api_nr_tenant_wf_created": "node_runs (tenant, workflow_id, created_at, execution_id, "
                                "node_id, attempt)",
    "api_nr_model_created": "node_runs (model, created_at, execution_id, node_id, attempt)",
    "api_nr_tenant_model_created": "node_runs (tenant, model, created_at, execution_id, "
                                   "node_id, attempt)",
}


def upgrade() -> None:
    for name, target in INDEXES.items():
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")


def downgrade() -> None:
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
