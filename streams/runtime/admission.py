"""Flow control: how many executions of a workflow (and of a tenant) run at once.

A workflow that declares `concurrency.max_executions` (or any workflow, when
`tenant_max_executions` is set) starts its executions as `ExecutionQueued`. The timers
role (dispatcher) sees that event and enqueues the execution here; when a slot is free the
execution is admitted and the dispatcher writes `ExecutionAdmitted` to `commands`, which
the orchestrator turns into `ExecutionStarted`. A terminal event releases the slot and
admits the next in line. Nothing of this runs in the orchestrator's loop.

Redis holds, per workflow, a FIFO list of waiting entries and a set of admitted ids, and
per tenant a set of admitted ids; one Lua script does each step atomically, so any number
of dispatchers share the counters. Every step is idempotent (the dispatcher is
at-least-once and replays its partitions on assignment): enqueueing an admitted id
re-sends its admission (the orchestrator drops the duplicate), a released id is
remembered for a week so a replay does not queue it again.

Order: FIFO per workflow. With a tenant limit, a freed tenant slot goes to the first
waiting execution of the releasing workflow, then of the tenant's other workflows in turn:
no strict FIFO across workflows. Not Redis Cluster safe (keys are built in the script).
Redis without persistence loses the counters on restart: replaying the log re-creates the
waiting entries but not the admitted sets of executions still running, so the limits
over-admit until those end.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

_SCRIPT = """
local op, prefix, tenant, tlimit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local wf, entry, id = ARGV[5], ARGV[7], ARGV[8]
local ta = prefix .. 'ta:' .. tenant
local function pump(w)
  local q, wa = prefix .. 'q:' .. w, prefix .. 'wa:' .. w
  local wlimit = tonumber(redis.call('HGET', prefix .. 'limits', w) or '0')
  local out = {}
  while true do
    local head = redis.call('LINDEX', q, 0)
    if not head then break end
    if wlimit > 0 and redis.call('SCARD', wa) >= wlimit then break end
    if tlimit > 0 and redis.call('SCARD', ta) >= tlimit then break end
    redis.call('LPOP', q)
    local hid = string.match(head, '^[^|]+')
    redis.call('SADD', wa, hid)
    redis.call('SADD', ta, hid)
    table.insert(out, head)
  end
  return out
end
if op == 'enqueue' then
  redis.call('HSET', prefix .. 'limits', wf, ARGV[6])
  redis.call('SADD', prefix .. 'tq:' .. tenant, wf)
  if redis.call('SISMEMBER', prefix .. 'wa:' .. wf, id) == 1 then return {entry} end
  if redis.call('EXISTS', prefix .. 'done:' .. id) == 1 then return {} end
  if not redis.call('LPOS', prefix .. 'q:' .. wf, entry) then
    redis.call('RPUSH', prefix .. 'q:' .. wf, entry)
  end
  return pump(wf)
end
-- release
redis.call('SET', prefix .. 'done:' .. id, '1', 'EX', 604800)
redis.call('LREM', prefix .. 'q:' .. wf, 0, entry)
redis.call('SREM', prefix .. 'wa:' .. wf, id)
redis.call('SREM', ta, id)
local out = pump(wf)
if tlimit > 0 then
  for _, other in ipairs(redis.call('SMEMBERS', prefix .. 'tq:' .. tenant)) do
    if other ~= wf then
      for _, e in ipairs(pump(other)) do table.insert(out, e) end
    end
  end
end
return out
"""


@dataclass(frozen=True)
class Entry:
    """A waiting or admitted execution, as Redis stores it (`id|workflow|version|tenant`)."""

    execution_id: str
    workflow_id: str
    workflow_version: int
    tenant: str

    def encode(self) -> str:
        return f"{self.execution_id}|{self.workflow_id}|{self.workflow_version}|{self.tenant}"

    @classmethod
    def decode(cls, raw: bytes | str) -> Entry:
        text = raw.decode() if isinstance(raw, bytes) else raw
        eid, wid, version, tenant = text.split("|", 3)
        return cls(eid, wid, int(version), tenant)


class Admission:
    """The Redis side of flow control (one per dispatcher process)."""

    def __init__(self, redis_url: str, prefix: str, tenant_limit: int) -> None:
        import redis.asyncio as aioredis

        self.redis: Any = aioredis.from_url(redis_url)
        self.prefix = f"flowlog:admission:{prefix}"
        self.tenant_limit = tenant_limit
        self._script = self.redis.register_script(_SCRIPT)

    async def _call(self, op: str, entry: Entry, workflow_limit: int) -> list[Entry]:
        out = await self._script(args=[
            op, self.prefix, entry.tenant, self.tenant_limit, entry.workflow_id,
            workflow_limit, entry.encode(), entry.execution_id])
        return [Entry.decode(raw) for raw in out]

    async def enqueue(self, entry: Entry, workflow_limit: int | None) -> list[Entry]:
        """Queue an execution; returns every execution admitted now (maybe itself)."""
        return await self._call("enqueue", entry, workflow_limit or 0)

    async def release(self, entry: Entry) -> list[Entry]:
        """Free its slot (or drop it from the queue); returns the executions admitted now."""
        return await self._call("release", entry, 0)

    async def aclose(self) -> None:
        await self.redis.aclose()
