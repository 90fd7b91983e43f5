"""Ingress: the poller's persisted state per poll trigger (cursor, content hash, backoff).

Revision ID: ingress_0002
Revises: ingress_0001
"""

from alembic import op

revision = "ingress_0002"
down_revision = "ingress_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
CREATE TABLE poll_state (
    workflow_id    text NOT NULL,
    trigger_index  integer NOT NULL,
    cursor_value   text,
    content_hash   text,
    fence          bigint NOT NULL DEFAULT 0,
    failures       integer NOT NULL DEFAULT 0,
    last_error     text NOT NULL DEFAULT '',
    next_at        timestamptz,
    polled_at      timestamptz,
    PRIMARY KEY (workflow_id, trigger_index)
);
""")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS poll_state")
