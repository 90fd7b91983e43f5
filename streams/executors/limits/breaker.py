"""Circuit breakers per target: closed → open after N consecutive failures → half-open
after a cool-down (one trial call) → closed on success, open again on failure.

Only failures that say something about the target's health count (5xx, 429, timeouts,
connection errors); a 4xx is the caller's fault and leaves the breaker alone.

Two stores behind one port (`Breakers`): each process's own state machines
(`LocalBreakers`), or one state per target in Redis shared by every executor process
(`RedisBreakers`: a Lua script on Redis's clock), so one process's knowledge of a failing
target protects the others. A fail-fast `CircuitOpen` carries ``retry_at``, the wall-clock
time a retry may get through (the half-open time, or a moment later while another call is
the trial), which the orchestrator uses to retry without spending an attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from flowlog.streams.executors.errors import CircuitOpen

log = logging.getLogger(__name__)

#: While another call is the half-open trial, the others retry after at most this long.
TRIAL_POLL_S = 1.0


def _circuit_open(target: str, failures: int, retry_in: float) -> CircuitOpen:
    return CircuitOpen(
        f"circuit open for {target} after {failures} consecutive failures; calls fail fast "
        f"for {retry_in:.1f}s more, then one trial call is let through (not counted as an "
        "attempt: the call was not made)",
        retry_at=datetime.now(UTC) + timedelta(seconds=retry_in))


class BreakerState(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


class CircuitBreaker:
    """One target's breaker; `clock` is a monotonic clock in seconds (injected in tests)."""

    def __init__(
        self,
        target: str,
        *,
        failure_threshold: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.failure_threshold = max(1, failure_threshold)
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state = BreakerState.closed
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.open and self._clock() - self._opened_at >= self.cooldown_s:
            self._state = BreakerState.half_open
            self._trial_in_flight = False
        return self._state

    def before_call(self) -> None:
        """Raise `CircuitOpen` (retryable) unless a call may go to the target now."""
        state = self.state
        if state is BreakerState.closed:
            return
        if state is BreakerState.half_open and not self._trial_in_flight:
            self._trial_in_flight = True
            return
        if state is BreakerState.half_open:  # another call is the trial
            retry_in = min(self.cooldown_s, TRIAL_POLL_S)
        else:
            retry_in = max(0.0, self.cooldown_s - (self._clock() - self._opened_at))
        raise _circuit_open(self.target, self._failures, retry_in)

    def record_success(self) -> None:
        self._state = BreakerState.closed
        self._failures = 0
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._state is BreakerState.half_open or self._failures >= self.failure_threshold:
            self._state = BreakerState.open
            self._opened_at = self._clock()
        self._trial_in_flight = False

    def record_neutral(self) -> None:
        """The call ended saying nothing about the target (4xx, cancelled): free the trial."""
        self._trial_in_flight = False


class Breakers(Protocol):
    """The breaker port: ask before a call, report how it went."""

    async def before_call(self, target: str) -> None:
        """Raise `CircuitOpen` unless a call may go to ``target`` now."""

    async def record_success(self, target: str) -> None: ...
    async def record_failure(self, target: str) -> None: ...
    async def record_neutral(self, target: str) -> None: ...
    def open_count(self) -> int:
        """Breakers open or half-open now (the ``flowlog_open_breakers`` gauge)."""
    async def aclose(self) -> None: ...


class LocalBreakers:
    """The breakers of one process, created on first use per target key."""

    def __init__(
        self,
        *,
        failure_threshold: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failure_threshold
        self._cooldown = cooldown_s
        self._clock = clock
        self._by_target: dict[str, CircuitBreaker] = {}

    def get(self, target: str) -> CircuitBreaker:
        breaker = self._by_target.get(target)
        if breaker is None:
            breaker = CircuitBreaker(
                target,
                failure_threshold=self._threshold,
                cooldown_s=self._cooldown,
                clock=self._clock,
            )
            self._by_target[target] = breaker
        return breaker

    async def before_call(self, target: str) -> None:
        self.get(target).before_call()

    async def record_success(self, target: str) -> None:
        self.get(target).record_success()

    async def record_failure(self, target: str) -> None:
        self.get(target).record_failure()

    async def record_neutral(self, target: str) -> None:
        self.get(target).record_neutral()

    def open_count(self) -> int:
        """Breakers open or half-open now (``flowlog_open_breakers``; any thread)."""
        return sum(1 for b in list(self._by_target.values()) if b.state != "closed")

    async def aclose(self) -> None:
        return None


# KEYS[1] the target's hash; ARGV op, threshold, cooldown_s, trial_poll_s, ttl_ms.
# Fields: state (closed/open/half_open), failures, opened_at, trial_until (a lease, so a
# trial whose process died frees itself). Returns {verdict, retry_in, failures}.
BREAKER_SCRIPT = """
local op = ARGV[1]
local threshold = tonumber(ARGV[2])
local cooldown = tonumber(ARGV[3])
local poll = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local h = redis.call('HMGET', KEYS[1], 'state', 'failures', 'opened_at', 'trial_until')
local state = h[1] or 'closed'
local failures = tonumber(h[2]) or 0
local opened_at = tonumber(h[3]) or 0
local trial_until = tonumber(h[4]) or 0
if state == 'open' and now - opened_at >= cooldown then
  state = 'half_open'
  trial_until = 0
end
local verdict = 'ok'
local retry_in = 0
if op == 'before' then
  if state == 'open' then
    verdict = 'open'
    retry_in = cooldown - (now - opened_at)
  elseif state == 'half_open' then
    if trial_until < now then
      trial_until = now + math.max(cooldown, poll)
    else
      verdict = 'open'
      retry_in = math.min(poll, trial_until - now)
    end
  end
elseif op == 'success' then
  state = 'closed'
  failures = 0
  trial_until = 0
elseif op == 'failure' then
  failures = failures + 1
  if state == 'half_open' or failures >= threshold then
    state = 'open'
    opened_at = now
  end
  trial_until = 0
elseif op == 'neutral' then
  trial_until = 0
end
redis.call('HSET', KEYS[1], 'state', state, 'failures', tostring(failures),
           'opened_at', tostring(opened_at), 'trial_until', tostring(trial_until))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
return {verdict, tostring(retry_in), tostring(failures)}
"""


class RedisBreakers:
    """One breaker per target shared by every executor process through Redis.

    With ``mode="auto"`` a Redis that does not answer (at start or later) falls back to
    this process's own breakers, logged once; with ``mode="redis"`` it is an error.
    """

    def __init__(self, redis_url: str, *, key_prefix: str, failure_threshold: int,
                 cooldown_s: float, mode: str = "auto",
                 local: LocalBreakers | None = None) -> None:
        self._url = redis_url
        self._prefix = key_prefix
        self._threshold = max(1, failure_threshold)
        self._cooldown = cooldown_s
        self._ttl_ms = int(max(3600.0, cooldown_s * 10) * 1000)
        self.mode = mode
        self.local = local or LocalBreakers(failure_threshold=failure_threshold,
                                            cooldown_s=cooldown_s)
        self._redis: Any = None
        self._script: Any = None
        self._checked = False
        self._lock = asyncio.Lock()
        self._warned = False
        #: targets this process has asked about (whose shared state the gauge reads)
        self.seen: set[str] = set()
        self._sync: Any = None  # a blocking client for the metrics thread's reads

    @property
    def backend(self) -> str:
        """ "redis" or "local" (after the first call; "pending" before)."""
        if not self._checked:
            return "pending"
        return "redis" if self._redis is not None else "local"

    async def _connect(self) -> None:
        async with self._lock:
            if self._checked:
                return
            try:
                import redis.asyncio as aioredis

                client = aioredis.Redis.from_url(self._url, socket_connect_timeout=0.5,
                                                 socket_timeout=2.0)
                await client.ping()
                self._redis = client
                self._script = client.register_script(BREAKER_SCRIPT)
            except Exception as exc:
                if self.mode == "redis":
                    raise CircuitOpen(f"shared circuit breakers unavailable: {exc}") from exc
                log.info("breakers: Redis not reachable (%s); per-process breakers", exc)
            finally:
                self._checked = True

    async def _run(self, op: str, target: str) -> tuple[str, float, int] | None:
        """The script's verdict, or None when the local breakers must answer."""
        if not self._checked:
            await self._connect()
        if self._redis is None:
            return None
        self.seen.add(target)
        try:
            verdict, retry_in, failures = await self._script(
                keys=[f"{self._prefix}breaker:{target}"],
                args=[op, self._threshold, self._cooldown, TRIAL_POLL_S, self._ttl_ms])
        except Exception as exc:
            if self.mode == "redis":
                raise CircuitOpen(f"shared circuit breakers unavailable: {exc}") from exc
            if not self._warned:
                log.warning("breakers: Redis failed (%s); per-process breakers", exc)
                self._warned = True
            return None
        as_text = verdict.decode() if isinstance(verdict, bytes) else str(verdict)
        return as_text, float(retry_in), int(failures)

    async def before_call(self, target: str) -> None:
        answer = await self._run("before", target)
        if answer is None:
            return await self.local.before_call(target)
        verdict, retry_in, failures = answer
        if verdict == "open":
            raise _circuit_open(target, failures, max(0.0, retry_in))
        return None

    async def record_success(self, target: str) -> None:
        if await self._run("success", target) is None:
            await self.local.record_success(target)

    async def record_failure(self, target: str) -> None:
        if await self._run("failure", target) is None:
            await self.local.record_failure(target)

    async def record_neutral(self, target: str) -> None:
        if await self._run("neutral", target) is None:
            await self.local.record_neutral(target)

    def open_count(self) -> int:
        """Breakers open or half-open now (``flowlog_open_breakers``), read when scraped
        (from the metrics thread: a blocking client, 1 s timeout): the shared state in
        Redis of every target this process has called (whoever opened it; an expired key
        is closed), plus this process's own breakers for calls Redis did not answer.
        Redis not answering the read: the own breakers alone."""
        own = self.local.open_count()
        targets = sorted(self.seen)
        if self._redis is None or not targets:
            return own
        try:
            if self._sync is None:
                import redis

                self._sync = redis.Redis.from_url(self._url, socket_connect_timeout=1.0,
                                                  socket_timeout=1.0)
            pipe = self._sync.pipeline(transaction=False)
            for target in targets:
                pipe.hget(f"{self._prefix}breaker:{target}", "state")
            states = pipe.execute()
        except Exception as exc:
            log.debug("breakers: reading the shared state for the gauge failed: %s", exc)
            return own
        return own + sum(1 for st in states if st is not None and st != b"closed")

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        if self._sync is not None:
            self._sync.close()
            self._sync = None


def breakers_for(settings: Any, *, clock: Callable[[], float] = time.monotonic) -> Breakers:
    """The breakers the settings ask for (``breaker_store``: auto, redis or local)."""
    local = LocalBreakers(failure_threshold=settings.breaker_failure_threshold,
                          cooldown_s=settings.breaker_cooldown_s, clock=clock)
    if settings.breaker_store == "local":
        return local
    return RedisBreakers(settings.redis_url, key_prefix=settings.topic_prefix,
                         failure_threshold=settings.breaker_failure_threshold,
                         cooldown_s=settings.breaker_cooldown_s,
                         mode=settings.breaker_store, local=local)
