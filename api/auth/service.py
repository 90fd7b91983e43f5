"""The auth use cases: log in, refresh (rotation with reuse detection), revoke, create
keys, and authenticate a request. Time comes from an injected clock.

Revocation reaches access tokens through Redis: revoking a refresh family or a user writes
a marker that lives as long as an access token may, and every request checks the markers
together with its rate limit (one pipeline).
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flowlog.api.auth.model import (
    ANY_SCOPE,
    SCOPES,
    Forbidden,
    Principal,
    RateLimited,
    Role,
    Unauthenticated,
)
from flowlog.api.auth.ratelimit import Limit, RedisLimiter
from flowlog.api.auth.secrets import (
    API_KEY_PREFIX,
    REFRESH_PREFIX,
    OpaqueToken,
    decode_access,
    encode_access,
    hash_password,
    hash_secret,
    secret_matches,
    verify_password,
)
from flowlog.api.auth.store import AuthStore, KeyRow

from flowlog.settings import Settings


def jwt_key(settings: Settings) -> str:
    """The HS256 key: the setting, else a random key kept in the state folder."""
    if settings.auth_jwt_secret:
        return settings.auth_jwt_secret
    path: Path = settings.state_dir / "auth_jwt_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{uuid.uuid4().hex}")
        tmp.write_text(secrets.token_urlsafe(48))
        tmp.chmod(0o600)
        tmp.replace(path) if not path.exists() else tmp.unlink()
    return path.read_text().strip()


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: str
    key: str  # shown once; only its hash is stored
    expires_at: datetime | None


class AuthService:
    """One per process; ``redis`` is a ``redis.asyncio`` client."""

    def __init__(self, settings: Settings, store: AuthStore, redis: Any, *,
                 clock: Callable[[], float] = time.time, namespace: str | None = None) -> None:
        self.settings = settings
        self.store = store
        self.redis = redis
        self.clock = clock
        self.key = jwt_key(settings)
        self.ns = f"{namespace if namespace is not None else settings.topic_prefix}auth:"
        self.limiter = RedisLimiter(redis, prefix=self.ns + "rl:")
        self._keys: dict[str, tuple[float, KeyRow | None]] = {}

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # --- bootstrap ---------------------------------------------------------------------

    async def create_user(self, username: str, password: str | None, tenant: str,
                          role: str) -> str:
        Role.parse(role)
        pw = hash_password(password) if password is not None else None
        return await self.store.upsert_user(f"u_{uuid.uuid4().hex[:16]}", username, pw,
                                            tenant, role)

    async def create_key(self, *, tenant: str, role: str, name: str = "",
                         scopes: list[str] | None = None, expires_in_s: float | None = None,
                         created_by: str = "") -> NewKey:
        Role.parse(role)
        scopes = scopes or [ANY_SCOPE]
        bad = [s for s in scopes if s not in SCOPES]
        if bad:
            raise ValueError(f"unknown scope(s) {bad}: use some of {', '.join(SCOPES)}")
        token = OpaqueToken.new(API_KEY_PREFIX)
        expires = self._now() + timedelta(seconds=expires_in_s) if expires_in_s else None
        await self.store.insert_key(token.token_id, hash_secret(token.secret), name, tenant,
                                    role, scopes, created_by, expires)
        return NewKey(token.token_id, token.text, expires)

    # --- tokens ------------------------------------------------------------------------

    async def login(self, username: str, password: str, tenant: str) -> TokenPair:
        user = await self.store.user_by_name(username)
        if user is None or user["disabled"] or not verify_password(user["password_hash"],
                                                                   password):
            raise Unauthenticated("wrong username or password (or the user is disabled)")
        role = await self.store.role_of(user["user_id"], tenant)
        if role is None:
            raise Forbidden(f"user {username!r} has no role in tenant {tenant!r}: "
                            f"flowlog auth create-user {username} --tenant {tenant} --role …")
        return await self._issue(user["user_id"], username, tenant, role,
                                 family=uuid.uuid4().hex)

    async def _issue(self, user_id: str, username: str, tenant: str, role: str,
                     family: str) -> TokenPair:
        now = self.clock()
        ttl = self.settings.auth_access_ttl_s
        claims = {"sub": user_id, "name": username, "tid": tenant, "rol": role,
                  "fam": family, "jti": uuid.uuid4().hex, "typ": "access",
                  "iat": int(now), "exp": int(now) + ttl}
        refresh = OpaqueToken.new(REFRESH_PREFIX)
        await self.store.insert_refresh(
            refresh.token_id, hash_secret(refresh.secret), family, user_id, tenant,
            self._now() + timedelta(seconds=self.settings.auth_refresh_ttl_s))
        return TokenPair(encode_access(claims, self.key), refresh.text, ttl)

    async def refresh(self, refresh_text: str) -> TokenPair:
        """Rotate: the old refresh token is spent, a new pair is issued. Presenting a spent
        token again revokes its whole family (it was stolen, or the client is confused)."""
        token = OpaqueToken.parse(refresh_text, REFRESH_PREFIX)
        row = await self.store.refresh(token.token_id)
        if row is None or not secret_matches(row.secret_hash, token.secret):
            raise Unauthenticated("unknown refresh token: log in again")
        if row.revoked_at is not None:
            raise Unauthenticated("refresh token revoked: log in again")
        if row.expires_at <= self._now():
            raise Unauthenticated("refresh token expired: log in again")
        if row.used_at is not None or not await self.store.mark_used(row.token_id):
            await self._revoke_family(row.family_id)
            raise Unauthenticated("refresh token already used: every token of this session "
                                  "is revoked; log in again")
        user = await self.store.user(row.user_id)
        role = await self.store.role_of(row.user_id, row.tenant)
        if user is None or user["disabled"] or role is None:
            raise Unauthenticated("the user is disabled or lost its role: log in again")
        return await self._issue(row.user_id, user["username"], row.tenant, role,
                                 row.family_id)

    async def _revoke_family(self, family_id: str) -> None:
        await self.store.revoke_family(family_id)
        await self.redis.set(f"{self.ns}revoked:fam:{family_id}", "1",
                             ex=self.settings.auth_access_ttl_s + 60)

    async def logout(self, refresh_text: str) -> None:
        """Revoke the session of this refresh token (its access tokens too)."""
        token = OpaqueToken.parse(refresh_text, REFRESH_PREFIX)
        row = await self.store.refresh(token.token_id)
        if row is None or not secret_matches(row.secret_hash, token.secret):
            raise Unauthenticated("unknown refresh token")
        await self._revoke_family(row.family_id)

    async def revoke_user(self, username: str) -> bool:
        """Disable a user: refresh tokens revoked, access tokens refused from now on."""
        user = await self.store.user_by_name(username)
        if user is None:
            return False
        await self.store.disable_user(user["user_id"])
        await self.redis.set(f"{self.ns}nbf:user:{user['user_id']}", str(self.clock()),
                             ex=self.settings.auth_access_ttl_s + 60)
        return True

    async def revoke_key(self, key_id: str) -> bool:
        found = await self.store.revoke_key(key_id)
        if found:  # refused at once by every process, before their caches expire
            await self.redis.set(f"{self.ns}revoked:key:{key_id}", "1",
                                 ex=int(self.settings.auth_cache_ttl_s) + 60)
        self._keys.pop(key_id, None)
        return found

    # --- requests ----------------------------------------------------------------------

    async def authenticate(self, authorization: str | None, api_key: str | None
                           ) -> Principal:
        """The caller of a request (``Authorization: Bearer <jwt|key>`` or ``X-API-Key``),
        revocation and rate limit checked. Raises ``AuthError`` (401, 403, 429)."""
        credential = api_key
        if credential is None and authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise Unauthenticated("Authorization must be 'Bearer <token>'")
            credential = value.strip()
        if not credential:
            raise Unauthenticated("credentials required: send 'Authorization: Bearer "
                                  "<access token>' or 'X-API-Key: <key>'")
        if credential.startswith(API_KEY_PREFIX + "_"):
            principal, marker = await self._from_key(credential), None
        else:
            claims = decode_access(credential, self.key)
            principal = Principal(claims["sub"], "user", claims["tid"], Role.parse(
                claims["rol"]), name=claims.get("name", ""))
            marker = claims
        await self._check(principal, marker)
        return principal

    async def _from_key(self, text: str) -> Principal:
        token = OpaqueToken.parse(text, API_KEY_PREFIX)
        now = self.clock()
        cached = self._keys.get(token.token_id)
        if cached is None or cached[0] < now:
            row = await self.store.key(token.token_id)
            if len(self._keys) > 10_000:
                self._keys.clear()
            self._keys[token.token_id] = (now + self.settings.auth_cache_ttl_s, row)
        else:
            row = cached[1]
        if row is None or not secret_matches(row.secret_hash, token.secret):
            raise Unauthenticated("unknown API key")
        if row.revoked_at is not None:
            raise Unauthenticated(f"API key {row.key_id} is revoked")
        if row.expires_at is not None and row.expires_at <= self._now():
            raise Unauthenticated(f"API key {row.key_id} expired at "
                                  f"{row.expires_at.isoformat()}: create a new one")
        return Principal(row.key_id, "key", row.tenant, Role.parse(row.role),
                         frozenset(row.scopes), name=row.name)

    async def _check(self, principal: Principal, claims: dict[str, Any] | None) -> None:
        """Revocation markers and the principal's rate limit, in one round trip."""
        checks = [f"{self.ns}revoked:key:{principal.subject}"]
        if claims is not None:
            checks = [f"{self.ns}revoked:fam:{claims.get('fam', '')}",
                      f"{self.ns}nbf:user:{principal.subject}"]
        limit = Limit(f"{principal.kind}:{principal.subject}", self.settings.auth_rate_per_s,
                      self.settings.auth_rate_burst)
        admission = await self.limiter.admit([limit], checks=checks)
        if admission.flagged:
            values = admission.flagged
            if claims is None:
                raise Unauthenticated(f"API key {principal.subject} is revoked")
            if values[0]:
                raise Unauthenticated("session revoked: log in again")
            if values[1] and float(values[1]) >= claims["iat"]:
                raise Unauthenticated("user revoked: tokens issued before are refused")
            admission = await self.limiter.admit([limit])  # a marker older than the token
        if not admission.admitted:
            raise RateLimited(f"{principal.label} is over {self.settings.auth_rate_per_s:g} "
                              "requests/s: slow down", retry_after=admission.retry_after_s)
