"""Query API indexes on the ingress tables (webhook registrations and schedules by tenant).

Revision ID: api_0002
Revises: api_0001
"""

from alembic import op

revision = "api_0002"
down_revision = "api_0001"
branch_labels = None
depends_on = "ingress_0001"

INDEXES = {
    "api_wh_tenant": "webhook_registrations (tenant, path)",
    "api_sc_tenant": "schedules (tenant, workflow_id, trigger_index)",
}


def upgrade() -> None:
    for name, target in INDEXES.items():
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")


def downgrade() -> None:
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
