"""Wiring: an ``AuthService`` on the settings' PostgreSQL schema and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from flowlog.api.auth.service import AuthService
from flowlog.api.auth.store import AuthStore, make_pool

from flowlog.settings import Settings


@asynccontextmanager
async def auth_service(settings: Settings, schema: str | None = None,
                       namespace: str | None = None) -> AsyncIterator[AuthService]:
    pool = make_pool(settings, schema)
    await pool.open()
    client = aioredis.from_url(settings.redis_url)
    try:
        yield AuthService(settings, AuthStore(pool), client, namespace=namespace)
    finally:
        await client.aclose()
        await pool.close()
