"""Rate limits in Redis (GCRA, one round trip), shared by every process of a deployment.

One Lua script checks several limits at once (per principal; per IP and per key for
webhooks) and, optionally, claims a one-time key (a webhook signature: replay refusal),
so a request costs one Redis round trip. Redis's own clock is used, so process clocks
need not agree. A limit that refuses does not consume the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# KEYS: n limit keys, m check keys, then an optional once-key.
# ARGV: n, m, has_once, rate_1, burst_1, ..., rate_n, burst_n, once_ttl_ms.
# Returns {status, retry_after_ms, index, check values...}: 1 admitted, 0 limited (by limit
# index), 2 replay, 3 a check key is set (nothing consumed; the caller reads the values).
ADMIT_SCRIPT = """
local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local has_once = tonumber(ARGV[3])
local checks = {}
local flagged = false
for j = 1, m do
  local v = redis.call('GET', KEYS[n + j])
  if v then flagged = true; checks[j] = v else checks[j] = '' end
end
if flagged then
  return {3, 0, 0, unpack(checks)}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local new = {}
for i = 1, n do
  local rate = tonumber(ARGV[2 + 2 * i])
  local burst = tonumber(ARGV[3 + 2 * i])
  local interval = 1000000 / rate
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local ntat = tat + interval
  local over = ntat - now - burst * interval
  if over > 0 then
    return {0, math.ceil(over / 1000), i}
  end
  new[i] = ntat
end
for i = 1, n do
  redis.call('SET', KEYS[i], string.format('%.0f', new[i]), 'PX',
             math.ceil((new[i] - now) / 1000) + 1)
end
if has_once == 1 then
  local ttl = tonumber(ARGV[4 + 2 * n])
  if not redis.call('SET', KEYS[n + m + 1], '1', 'NX', 'PX', ttl) then
    return {2, 0, 0}
  end
end
return {1, 0, 0}
"""


@dataclass(frozen=True, slots=True)
class Limit:
    """``rate`` requests per second on ``key``, ``burst`` of them at once."""

    key: str
    rate: float
    burst: float


@dataclass(frozen=True, slots=True)
class Admission:
    admitted: bool
    replayed: bool = False
    retry_after_s: float = 0.0
    limit: Limit | None = None  # the limit that refused
    flagged: tuple[str | None, ...] = ()  # check-key values when one is set (nothing used)

    @property
    def retry_after_header(self) -> str:
        """``Retry-After`` in whole seconds, at least 1."""
        return str(max(1, math.ceil(self.retry_after_s)))


class RedisLimiter:
    """Checks limits (and a once-key) in one round trip on a ``redis.asyncio`` client."""

    def __init__(self, redis: Any, prefix: str = "flowlog:rl:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._script = redis.register_script(ADMIT_SCRIPT)

    async def admit(self, limits: list[Limit], once_key: str | None = None,
                    once_ttl_s: float = 0.0, checks: list[str] | None = None) -> Admission:
        """Admit one request against ``limits``; ``checks`` are full Redis keys (e.g.
        revocation markers) read first: when one is set, nothing is consumed and their
        values come back in ``flagged``. ``once_key`` refuses a repeat (replay)."""
        active = [lim for lim in limits if lim.rate > 0]
        checks = checks or []
        keys = [self.prefix + lim.key for lim in active] + checks
        args: list[Any] = [len(active), len(checks), 0 if once_key is None else 1]
        for lim in active:
            args += [lim.rate, max(1.0, lim.burst)]
        if once_key is not None:
            keys.append(self.prefix + "once:" + once_key)
            args.append(max(1, int(once_ttl_s * 1000)))
        status, retry_ms, index, *values = await self._script(keys=keys, args=args)
        if int(status) == 3:
            return Admission(False, flagged=tuple(
                v.decode() if isinstance(v, bytes) and v else (v or None) for v in values))
        if int(status) == 0:
            return Admission(False, retry_after_s=int(retry_ms) / 1000,
                             limit=active[int(index) - 1])
        if int(status) == 2:
            return Admission(False, replayed=True)
        return Admission(True)
