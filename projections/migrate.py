"""Apply the migrations: ``migrate(settings)`` upgrades one schema to every head.

Used by ``flowlog db migrate``, ``make up`` and the tests (each test's own schema).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from flowlog.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def sqlalchemy_url(settings: Settings) -> str:
    return settings.pg_dsn.replace("postgresql://", "postgresql+psycopg://", 1)


def _config(settings: Settings, schema: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["url"] = sqlalchemy_url(settings)
    cfg.attributes["schema"] = schema
    return cfg


def migrate(settings: Settings, schema: str | None = None) -> list[str]:
    """Upgrade ``schema`` (default ``settings.pg_schema``) to every head; returns the heads."""
    target = schema or settings.pg_schema
    cfg = _config(settings, target)
    command.upgrade(cfg, "heads")
    return current(settings, target)


def current(settings: Settings, schema: str | None = None) -> list[str]:
    """The revisions ``schema`` is at (empty before the first migration)."""
    target = schema or settings.pg_schema
    engine = create_engine(sqlalchemy_url(settings), future=True)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'SET search_path TO "{target}", public'))
            ctx = MigrationContext.configure(conn, opts={"version_table_schema": target})
            return sorted(ctx.get_current_heads())
    finally:
        engine.dispose()


def heads() -> list[str]:
    """Every head revision kept in the repository."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return sorted(ScriptDirectory.from_config(cfg).get_heads())
