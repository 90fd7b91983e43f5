"""Token formats, hashing and JWTs (pure apart from randomness; PyJWT and argon2-cffi).

* Passwords: argon2id (argon2-cffi), slow on purpose: they are low-entropy.
* API keys and refresh tokens: ``<prefix>_<id>.<secret>`` with a 256-bit random secret;
  only SHA-256 of the secret is stored. A fast hash is enough for a secret that cannot be
  guessed (the practice of GitHub and Stripe keys), and it keeps a key check ~µs, where
  argon2 would cost ~50 ms of CPU per request.
* Access tokens: HS256 JWTs (PyJWT) carrying subject, tenant, role, refresh family, expiry.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flowlog.api.auth.model import Unauthenticated

API_KEY_PREFIX = "flk"
REFRESH_PREFIX = "flr"
JWT_ALGORITHM = "HS256"
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(stored_hash: str, secret: str) -> bool:
    return hmac.compare_digest(stored_hash, hash_secret(secret))


@dataclass(frozen=True, slots=True)
class OpaqueToken:
    """``<prefix>_<id>.<secret>``: the id finds the row, the secret proves possession."""

    prefix: str
    token_id: str
    secret: str

    @property
    def text(self) -> str:
        return f"{self.prefix}_{self.token_id}.{self.secret}"

    @classmethod
    def new(cls, prefix: str) -> OpaqueToken:
        return cls(prefix, secrets.token_hex(8), secrets.token_urlsafe(32))

    @classmethod
    def parse(cls, text: str, prefix: str) -> OpaqueToken:
        head, _, secret = text.partition(".")
        pre, _, token_id = head.partition("_")
        if pre != prefix or not token_id or not secret:
            raise Unauthenticated(f"malformed token: expected {prefix}_<id>.<secret>")
        return cls(pre, token_id, secret)


def encode_access(claims: dict[str, Any], key: str) -> str:
    return jwt.encode(claims, key, algorithm=JWT_ALGORITHM)


def decode_access(token: str, key: str, *, now: float | None = None) -> dict[str, Any]:
    """Verify signature, expiry and type; raises ``Unauthenticated`` saying why."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=[JWT_ALGORITHM],
            options={"require": ["exp", "iat", "sub", "tid", "rol", "jti", "typ"],
                     "verify_exp": now is None},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("access token expired: get a new one with the refresh "
                              "token (POST /auth/refresh)") from None
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"invalid access token: {exc}") from None
    if now is not None and claims["exp"] <= now:
        raise Unauthenticated("access token expired: get a new one with the refresh "
                              "token (POST /auth/refresh)")
    if claims.get("typ") != "access":
        raise Unauthenticated("not an access token")
    return claims
