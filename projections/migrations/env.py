"""Alembic environment: one PostgreSQL schema per run (``schema`` attribute or the
``FLOWLOG_PG_SCHEMA`` setting), its own version table inside that schema."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

config = context.config
url: str = config.attributes.get("url") or config.get_main_option("sqlalchemy.url") or ""
schema: str = config.attributes.get("schema") or "public"

engine = create_engine(url, future=True)
with engine.connect() as conn:
    conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    conn.execute(text(f'SET search_path TO "{schema}", public'))
    conn.commit()
    context.configure(connection=conn, version_table_schema=schema,
                      transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
    conn.commit()
engine.dispose()
