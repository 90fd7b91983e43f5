"""The webhook signature scheme (pure)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from flowlog.api.webhooks import signing


def test_sign_is_hmac_sha256_of_timestamp_dot_body() -> None:
    header = signing.sign("k", 1700000000, b'{"a":1}')
    want = hmac.new(b"k", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={want}"


def test_verify_accepts_fresh_and_any_of_several_digests() -> None:
    body = b"{}"
    good = signing.sign("new", 1000, body)
    rotated = f"t=1000,v1={'0' * 64},{good.split(',')[1]}"
    assert signing.verify(good, "new", body, now=1010, tolerance_s=300).timestamp == 1000
    assert signing.verify(rotated, "new", body, now=990, tolerance_s=300)


@pytest.mark.parametrize(("header", "now", "match"), [
    (None, 1000, "missing"),
    ("t=abc,v1=00", 1000, "malformed"),
    ("t=1000", 1000, "malformed"),
    (signing.sign("k", 1000, b"{}"), 1301, "outside the tolerance"),
    (signing.sign("k", 1000, b"{}"), 699, "outside the tolerance"),
    (signing.sign("other", 1000, b"{}"), 1000, "does not match"),
    (signing.sign("k", 1000, b"{ }"), 1000, "does not match"),
])
def test_verify_refuses_with_the_reason(header: str | None, now: int, match: str) -> None:
    with pytest.raises(signing.SignatureError, match=match):
        signing.verify(header, "k", b"{}", now=now, tolerance_s=300)
