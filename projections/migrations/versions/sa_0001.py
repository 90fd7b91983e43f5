"""Search attributes (issue 12, item 2): operator-declared CEL attributes over an
execution's events, their values (one typed column per type, an index per type so a
filter is an index scan) and the queue of executions whose values are to be (re)evaluated.

No foreign key to `workflow_executions`: `flowlog projections rebuild` swaps that table and
refuses when another area's object depends on it.

Revision ID: sa_0001
Revises: 0001_base
"""

from alembic import op

revision = "sa_0001"
down_revision = "0001_base"
branch_labels = ("search_attributes",)
depends_on = "projections_0001"

UPGRADE = """
CREATE TABLE search_attributes (
    name text PRIMARY KEY,
    type text NOT NULL CHECK (type IN ('keyword', 'int', 'double', 'bool', 'datetime')),
    expression text NOT NULL,
    state text NOT NULL DEFAULT 'backfilling'
        CHECK (state IN ('backfilling', 'ready', 'failed')),
    backfill_cursor text NOT NULL DEFAULT '',
    done bigint NOT NULL DEFAULT 0,
    total bigint NOT NULL DEFAULT 0,
    waiting bigint NOT NULL DEFAULT 0,
    last_error text,
    declared_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE search_attribute_values (
    attribute text NOT NULL REFERENCES search_attributes (name) ON DELETE CASCADE,
    execution_id text NOT NULL,
    last_seq bigint NOT NULL,
    v_keyword text,
    v_int bigint,
    v_double double precision,
    v_bool boolean,
    v_datetime timestamptz,
    error text,
    evaluated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (attribute, execution_id)
);
CREATE INDEX sa_v_keyword ON search_attribute_values (attribute, v_keyword, execution_id)
    WHERE v_keyword IS NOT NULL;
CREATE INDEX sa_v_int ON search_attribute_values (attribute, v_int, execution_id)
    WHERE v_int IS NOT NULL;
CREATE INDEX sa_v_double ON search_attribute_values (attribute, v_double, execution_id)
    WHERE v_double IS NOT NULL;
CREATE INDEX sa_v_bool ON search_attribute_values (attribute, v_bool, execution_id)
    WHERE v_bool IS NOT NULL;
CREATE INDEX sa_v_datetime ON search_attribute_values (attribute, v_datetime, execution_id)
    WHERE v_datetime IS NOT NULL;
CREATE INDEX sa_v_errors ON search_attribute_values (attribute) WHERE error IS NOT NULL;
CREATE TABLE search_attribute_pending (
    execution_id text PRIMARY KEY,
    last_seq bigint NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sa_pending_queued ON search_attribute_pending (queued_at);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS search_attribute_pending, search_attribute_values, "
               "search_attributes")
