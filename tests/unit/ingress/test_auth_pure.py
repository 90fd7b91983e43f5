"""Auth's pure parts: roles, principals, token formats, JWTs."""

from __future__ import annotations

import time

import pytest
from flowlog.api.auth.model import Forbidden, Principal, Role, Unauthenticated
from flowlog.api.auth.secrets import (
    OpaqueToken,
    decode_access,
    encode_access,
    hash_password,
    hash_secret,
    secret_matches,
    verify_password,
)


def test_roles_are_ordered_and_parse_with_a_fix() -> None:
    assert Role.viewer < Role.operator < Role.admin
    with pytest.raises(ValueError, match="use one of viewer, operator, admin"):
        Role.parse("root")


def test_principal_require_checks_role_scope_and_tenant() -> None:
    p = Principal("k1", "key", "acme", Role.operator, frozenset({"executions:write"}))
    p.require("viewer", tenant="acme")
    p.require(Role.operator, "executions:write", "acme")
    with pytest.raises(Forbidden, match="needs admin"):
        p.require("admin")
    with pytest.raises(Forbidden, match="lacks scope 'workflows:write'"):
        p.require("operator", "workflows:write")
    with pytest.raises(Forbidden, match="belongs to tenant 'acme', not 'other'"):
        p.require("viewer", tenant="other")
    root = Principal("u1", "user", "*", Role.admin)
    root.require("admin", "workflows:write", "anything")


def test_opaque_tokens_round_trip_and_malformed_ones_are_refused() -> None:
    t = OpaqueToken.new("flk")
    assert OpaqueToken.parse(t.text, "flk") == t
    assert secret_matches(hash_secret(t.secret), t.secret)
    assert not secret_matches(hash_secret(t.secret), t.secret + "x")
    for bad in ("flk_abc", "flr_abc.def", "nonsense", "flk_.x"):
        with pytest.raises(Unauthenticated, match="malformed"):
            OpaqueToken.parse(bad, "flk")


def test_passwords_hash_with_argon2() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct horse")
    assert not verify_password(stored, "wrong horse")
    assert not verify_password("garbage", "x")
    with pytest.raises(ValueError, match="at least 8"):
        hash_password("short")


def _claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    return {"sub": "u", "tid": "t", "rol": "viewer", "jti": "j", "typ": "access",
            "iat": now, "exp": now + 60, **over}


def test_access_tokens_verify_expire_and_resist_tampering() -> None:
    token = encode_access(_claims(), "k" * 32)
    assert decode_access(token, "k" * 32)["sub"] == "u"
    with pytest.raises(Unauthenticated, match="invalid access token"):
        decode_access(token, "other-key-" * 4)
    head, body, sig = token.split(".")
    with pytest.raises(Unauthenticated, match="invalid"):
        decode_access(f"{head}.{body}x.{sig}", "k" * 32)
    old = encode_access(_claims(iat=1, exp=2), "k" * 32)
    with pytest.raises(Unauthenticated, match=r"expired.*refresh"):
        decode_access(old, "k" * 32)
    with pytest.raises(Unauthenticated, match="not an access token"):
        decode_access(encode_access(_claims(typ="refresh"), "k" * 32), "k" * 32)
