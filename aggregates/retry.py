"""Retry policy arithmetic: exponential backoff with deterministic jitter."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a node attempt is retried and how long to wait between attempts.

    `max_attempts` counts the first attempt (1 means no retry). The delay after attempt n
    is `initial_delay_ms * multiplier ** (n - 1)`, spread by ±`jitter` (a fraction) and
    capped at `max_delay_ms`.
    """

    max_attempts: int = 3
    initial_delay_ms: int = 1000
    multiplier: float = 2.0
    max_delay_ms: int = 60_000
    jitter: float = 0.2

    def to_dict(self) -> dict[str, object]:
        return {
            "max_attempts": self.max_attempts,
            "initial_delay_ms": self.initial_delay_ms,
            "multiplier": self.multiplier,
            "max_delay_ms": self.max_delay_ms,
            "jitter": self.jitter,
        }


NO_RETRY = RetryPolicy(max_attempts=1)


def jitter_fraction(execution_id: str, node_id: str, attempt: int) -> float:
    """A number in [0, 1) derived from a hash, so a re-decision yields the same due time."""
    digest = hashlib.blake2b(
        f"{execution_id}\x1f{node_id}\x1f{attempt}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") / 2**64


def backoff_ms(policy: RetryPolicy, execution_id: str, node_id: str, attempt: int) -> int:
    """Milliseconds to wait after failed `attempt` (1-based) before the next one."""
    base = policy.initial_delay_ms * policy.multiplier ** max(attempt - 1, 0)
    base = min(base, float(policy.max_delay_ms))
    if policy.jitter > 0:
        u = jitter_fraction(execution_id, node_id, attempt)
        base = base * (1.0 - policy.jitter + 2.0 * policy.jitter * u)
    return max(0, min(round(base), policy.max_delay_ms))


def retry_due_at(
    policy: RetryPolicy, execution_id: str, node_id: str, attempt: int, now: datetime
) -> datetime:
    """When the attempt after `attempt` is due, counted from `now` (the failure's time)."""
    return now + timedelta(milliseconds=backoff_ms(policy, execution_id, node_id, attempt))


#: Attempts deferred to the same half-open time are spread over this many milliseconds, so
#: the breaker's one trial call is not followed by a burst of fail-fast attempts.
DEFERRAL_SPREAD_MS = 1000


def deferred_due_at(retry_at: datetime, now: datetime, execution_id: str, node_id: str,
                    attempt: int) -> datetime:
    """When an attempt that never reached its target (open breaker) is retried: not before
    ``retry_at`` (nor ``now``), plus a deterministic spread below `DEFERRAL_SPREAD_MS`."""
    spread = jitter_fraction(execution_id, node_id, attempt) * DEFERRAL_SPREAD_MS
    return max(now, retry_at) + timedelta(milliseconds=round(spread))
