"""What the query API holds while it serves: the asyncpg pool (search_path = the schema),
Redis (live status), the auth service and the audit store (opened on first use)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis
from fastapi import HTTPException
from flowlog.api.auth.bootstrap import auth_service
from flowlog.api.auth.service import AuthService

from flowlog.settings import Settings


class AuditAccess:
    """The audit store (`projections.audit`), opened read-only on first use; its calls run
    on a thread (the store is synchronous). Its errors become 404/422/503 with the reason."""

    def __init__(self, settings: Settings, schema: str) -> None:
        self.settings = settings
        self.schema = schema
        self._store: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        from flowlog.projections.audit.store import AuditStore

        with self._lock:
            if self._store is None:
                self._store = AuditStore(self.settings, self.schema, readonly=True)
            return self._store

    async def call(self, fn: Callable[[Any], Any]) -> Any:
        from flowlog.projections.audit.errors import AuditError, AuditInputError
        from flowlog.projections.audit.store import AuditStoreMissing

        def run() -> Any:
            return fn(self._get())

        try:
            return await asyncio.to_thread(run)
        except AuditStoreMissing as exc:
            raise HTTPException(503, str(exc)) from None
        except AuditInputError as exc:
            text = str(exc)
            raise HTTPException(404 if "is not in the audit store" in text else 422,
                                text) from None
        except AuditError as exc:
            raise HTTPException(422, str(exc)) from None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


@dataclass
class Services:
    settings: Settings
    schema: str
    pool: asyncpg.Pool
    redis: Any
    auth: AuthService
    audit: AuditAccess


async def _init(conn: asyncpg.Connection) -> None:
    for name in ("jsonb", "json"):
        await conn.set_type_codec(name, encoder=lambda v: orjson.dumps(v).decode(),
                                  decoder=orjson.loads, schema="pg_catalog")


async def _reset(conn: asyncpg.Connection) -> None:
    """Return a connection to the pool without asyncpg's default reset query (a round trip
    per request: advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL). The API sets no session
    state, takes no lock and listens to nothing; only an open transaction is undone."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


@contextlib.asynccontextmanager
async def build_services(settings: Settings, schema: str | None = None
                         ) -> AsyncIterator[Services]:
    schema = schema or settings.pg_schema
    pool = await asyncpg.create_pool(
        settings.pg_dsn, min_size=2, max_size=settings.api_pg_pool, init=_init, reset=_reset,
        server_settings={"search_path": schema,  # the schema names the pool's backends
                         "application_name": f"flowlog-api:{schema}"[:63],
                         "default_transaction_read_only": "on"})
    assert pool is not None
    client = aioredis.from_url(settings.redis_url)
    audit = AuditAccess(settings, schema)
    try:
        async with auth_service(settings, schema) as auth:
            yield Services(settings, schema, pool, client, auth, audit)
    finally:
        await asyncio.to_thread(audit.close)
        await client.aclose()
        await pool.close()
