"""The auth tables in PostgreSQL (migration ingress_0001), through a psycopg async pool."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from flowlog.settings import Settings


def make_pool(settings: Settings, schema: str | None = None, *, min_size: int = 1,
              max_size: int = 4) -> AsyncConnectionPool:
    """A closed pool whose connections use ``schema`` (default ``settings.pg_schema``);
    ``await pool.open()`` before use."""
    target = schema or settings.pg_schema
    return AsyncConnectionPool(
        settings.pg_dsn, min_size=min_size, max_size=max_size, open=False,
        kwargs={"options": f"-c search_path={target}", "autocommit": True,
                "row_factory": dict_row},
    )


@dataclass(frozen=True, slots=True)
class KeyRow:
    key_id: str
    secret_hash: str
    name: str
    tenant: str
    role: str
    scopes: tuple[str, ...]
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class RefreshRow:
    token_id: str
    secret_hash: str
    family_id: str
    user_id: str
    tenant: str
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None


class AuthStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def _one(self, sql: str, *args: Any) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, args)
            return cast(dict[str, Any] | None, await cur.fetchone())

    async def _all(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, args)
            return cast(list[dict[str, Any]], await cur.fetchall())

    # --- users -------------------------------------------------------------------------

    async def upsert_user(self, user_id: str, username: str, password_hash: str | None,
                          tenant: str, role: str) -> str:
        """Create the user (or update its password if given) and set its role in tenant."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT user_id FROM auth_users WHERE username = %s", (username,))
            row: dict[str, Any] | None = await cur.fetchone()  # type: ignore[assignment]
            if row is None:
                if password_hash is None:
                    raise ValueError(f"user {username!r} does not exist: give a password "
                                     "to create it")
                await conn.execute(
                    "INSERT INTO auth_users (user_id, username, password_hash) "
                    "VALUES (%s, %s, %s)", (user_id, username, password_hash))
            else:
                user_id = row["user_id"]
                if password_hash is not None:
                    await conn.execute(
                        "UPDATE auth_users SET password_hash = %s, disabled = false "
                        "WHERE user_id = %s", (password_hash, user_id))
            await conn.execute(
                "INSERT INTO auth_memberships (user_id, tenant, role) VALUES (%s, %s, %s) "
                "ON CONFLICT (user_id, tenant) DO UPDATE SET role = EXCLUDED.role",
                (user_id, tenant, role))
        return user_id

    async def user_by_name(self, username: str) -> dict[str, Any] | None:
        return await self._one("SELECT * FROM auth_users WHERE username = %s", username)

    async def user(self, user_id: str) -> dict[str, Any] | None:
        return await self._one("SELECT * FROM auth_users WHERE user_id = %s", user_id)

    async def role_of(self, user_id: str, tenant: str) -> str | None:
        """The user's role in ``tenant`` (a membership in ``*`` counts everywhere)."""
        rows = await self._all(
            "SELECT tenant, role FROM auth_memberships WHERE user_id = %s "
            "AND tenant IN (%s, '*')", user_id, tenant)
        exact = [r["role"] for r in rows if r["tenant"] == tenant]
        return exact[0] if exact else (rows[0]["role"] if rows else None)

    async def disable_user(self, user_id: str) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("UPDATE auth_users SET disabled = true WHERE user_id = %s",
                               (user_id,))
            await conn.execute(
                "UPDATE auth_refresh_tokens SET revoked_at = now() "
                "WHERE user_id = %s AND revoked_at IS NULL", (user_id,))

    # --- API keys ----------------------------------------------------------------------

    async def insert_key(self, key_id: str, secret_hash: str, name: str, tenant: str,
                         role: str, scopes: list[str], created_by: str,
                         expires_at: datetime | None) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO auth_api_keys (key_id, secret_hash, name, tenant, role, scopes, "
                "created_by, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (key_id, secret_hash, name, tenant, role, scopes, created_by, expires_at))

    async def key(self, key_id: str) -> KeyRow | None:
        row = await self._one(
            "SELECT key_id, secret_hash, name, tenant, role, scopes, expires_at, revoked_at "
            "FROM auth_api_keys WHERE key_id = %s", key_id)
        if row is None:
            return None
        return KeyRow(**{**row, "scopes": tuple(row["scopes"])})

    async def revoke_key(self, key_id: str) -> bool:
        row = await self._one(
            "UPDATE auth_api_keys SET revoked_at = coalesce(revoked_at, now()) "
            "WHERE key_id = %s RETURNING key_id", key_id)
        return row is not None

    # --- refresh tokens ----------------------------------------------------------------

    async def insert_refresh(self, token_id: str, secret_hash: str, family_id: str,
                             user_id: str, tenant: str, expires_at: datetime) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO auth_refresh_tokens (token_id, secret_hash, family_id, user_id, "
                "tenant, expires_at) VALUES (%s, %s, %s, %s, %s, %s)",
                (token_id, secret_hash, family_id, user_id, tenant, expires_at))

    async def refresh(self, token_id: str) -> RefreshRow | None:
        row = await self._one(
            "SELECT token_id, secret_hash, family_id, user_id, tenant, expires_at, used_at, "
            "revoked_at FROM auth_refresh_tokens WHERE token_id = %s", token_id)
        return RefreshRow(**row) if row else None

    async def mark_used(self, token_id: str) -> bool:
        """Mark a refresh token used; False if it already was (a reuse: the race loser)."""
        row = await self._one(
            "UPDATE auth_refresh_tokens SET used_at = now() WHERE token_id = %s "
            "AND used_at IS NULL AND revoked_at IS NULL RETURNING token_id", token_id)
        return row is not None

    async def revoke_family(self, family_id: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE auth_refresh_tokens SET revoked_at = now() "
                "WHERE family_id = %s AND revoked_at IS NULL", (family_id,))
