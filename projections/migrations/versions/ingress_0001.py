"""Ingress tables: auth (users, tenant roles, API keys, refresh tokens), webhook
registrations, and the scheduler's schedules and schedule ledger.

Revision ID: ingress_0001
Revises: 0001_base
"""

from alembic import op

revision = "ingress_0001"
down_revision = "0001_base"
branch_labels = ("ingress",)
depends_on = None

UPGRADE = """
CREATE TABLE auth_users (
    user_id       text PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE auth_memberships (
    user_id text NOT NULL REFERENCES auth_users (user_id) ON DELETE CASCADE,
    tenant  text NOT NULL,
    role    text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    PRIMARY KEY (user_id, tenant)
);
CREATE TABLE auth_api_keys (
    key_id      text PRIMARY KEY,
    secret_hash text NOT NULL,
    name        text NOT NULL DEFAULT '',
    tenant      text NOT NULL,
    role        text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    scopes      text[] NOT NULL DEFAULT '{}',
    created_by  text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);
CREATE TABLE auth_refresh_tokens (
    token_id    text PRIMARY KEY,
    secret_hash text NOT NULL,
    family_id   text NOT NULL,
    user_id     text NOT NULL REFERENCES auth_users (user_id) ON DELETE CASCADE,
    tenant      text NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX auth_refresh_tokens_family ON auth_refresh_tokens (family_id);
CREATE INDEX auth_refresh_tokens_user ON auth_refresh_tokens (user_id);

CREATE TABLE webhook_registrations (
    path             text PRIMARY KEY,
    workflow_id      text NOT NULL,
    workflow_version integer NOT NULL,
    trigger_index    integer NOT NULL,
    tenant           text NOT NULL DEFAULT 'default',
    method           text NOT NULL DEFAULT 'POST',
    config           jsonb NOT NULL DEFAULT '{}',
    registered_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workflow_id, trigger_index)
);

CREATE TABLE schedules (
    workflow_id      text NOT NULL,
    trigger_index    integer NOT NULL,
    workflow_version integer NOT NULL,
    tenant           text NOT NULL DEFAULT 'default',
    config           jsonb NOT NULL,
    active           boolean NOT NULL DEFAULT true,
    since            timestamptz NOT NULL,
    cursor_at        timestamptz,
    fence            bigint NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, trigger_index)
);
CREATE TABLE schedule_slots (
    workflow_id      text NOT NULL,
    trigger_index    integer NOT NULL,
    slot_at          timestamptz NOT NULL,
    slot_id          text NOT NULL,
    state            text NOT NULL CHECK (state IN ('planned', 'fired', 'missed', 'skipped')),
    reason           text NOT NULL DEFAULT '',
    execution_id     text,
    workflow_version integer,
    fence            bigint NOT NULL DEFAULT 0,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, trigger_index, slot_at)
);
CREATE INDEX schedule_slots_state ON schedule_slots (state, slot_at);
"""

DOWNGRADE = """
DROP TABLE IF EXISTS schedule_slots;
DROP TABLE IF EXISTS schedules;
DROP TABLE IF EXISTS webhook_registrations;
DROP TABLE IF EXISTS auth_refresh_tokens;
DROP TABLE IF EXISTS auth_api_keys;
DROP TABLE IF EXISTS auth_memberships;
DROP TABLE IF EXISTS auth_users;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
