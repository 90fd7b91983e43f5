"""The webhook signature: HMAC-SHA256 over ``<timestamp>.<body>`` (pure).

Header ``X-Flowlog-Signature: t=<unix seconds>,v1=<hex digest>`` (several ``v1=`` may be
given while a secret rotates). The timestamp must be within the tolerance of the
gateway's clock, either way; digests are compared in constant time. Replays of a valid
signature inside the window are refused by the gateway (a Redis once-key per signature).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

SIGNATURE_HEADER = "x-flowlog-signature"


class SignatureError(Exception):
    """A request whose signature is missing, malformed, stale or wrong (answer 401)."""


@dataclass(frozen=True, slots=True)
class Signature:
    timestamp: int
    digests: tuple[str, ...]


def digest(secret: str | bytes, timestamp: int, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The header value a sender sends."""
    return f"t={timestamp},v1={digest(secret, timestamp, body)}"


def parse(header: str | None) -> Signature:
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header: send "
                             "t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<body>'>")
    timestamp: int | None = None
    digests: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            digests.append(value.lower())
    if timestamp is None or not digests:
        raise SignatureError(f"malformed {SIGNATURE_HEADER}: expected t=<unix seconds>,"
                             "v1=<hex digest>")
    return Signature(timestamp, tuple(digests))


def verify(header: str | None, secret: str | bytes, body: bytes, *, now: float,
           tolerance_s: float) -> Signature:
    """The parsed signature if it is fresh and matches; raises ``SignatureError``."""
    sig = parse(header)
    if abs(now - sig.timestamp) > tolerance_s:
        raise SignatureError(f"signature timestamp {sig.timestamp} is outside the tolerance "
                             f"of {tolerance_s:g}s (server time {int(now)}): sign with the "
                             "current time")
    expected = digest(secret, sig.timestamp, body)
    if not any(hmac.compare_digest(expected, d) for d in sig.digests):
        raise SignatureError("signature does not match the body: sign '<t>.<raw body>' "
                             "with the webhook's secret")
    return sig
