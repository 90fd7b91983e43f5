"""Polling triggers (``flowlog worker poller``): an HTTP source polled every ``interval``.

Change detection, persisted in ``poll_state`` so a restart fires nothing again:
* with a ``cursor`` expression: each item whose cursor value is above the stored one fires
  (dedup key ``poll:<index>:<cursor>``); the stored cursor becomes the largest seen;
* without: the content hash of the items; a different hash fires once (dedup key
  ``poll:<index>:<hash>``).
The dedup keys make a re-poll after a crash between publishing and saving name the same
executions. Per source: a fenced lock (several pollers), at most ``rate_limit`` polls per
second per host, and exponential backoff on errors (``failures`` and ``next_at`` persisted).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import redis.asyncio as aioredis
from flowlog.aggregates.definition.model import parse_duration_ms
from flowlog.aggregates.expressions import Expression, compile_expression
from flowlog.schemas.events import TriggerReceived
from flowlog.schemas.model import canonical_json
from flowlog.schemas.sdk import EventProducer
from flowlog.streams.triggers.definitions import TrackingRegistry
from flowlog.streams.triggers.scheduler import FencedLock, connect, utcnow
from psycopg import AsyncConnection

from flowlog.settings import Settings

log = logging.getLogger(__name__)
MAX_BACKOFF = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class PollSource:
    workflow_id: str
    workflow_version: int
    trigger_index: int
    tenant: str
    url: str
    method: str
    headers: dict[str, str]
    interval: timedelta
    items: Expression | None = None
    cursor: Expression | None = None
    filter: Expression | None = None
    input: Expression | None = None
    rate_limit: float | None = None
    name: str = field(default="")

    @classmethod
    def from_config(cls, workflow_id: str, version: int, index: int, tenant: str,
                    config: dict[str, Any]) -> PollSource:
        def expr(key: str) -> Expression | None:
            return compile_expression(config[key]) if config.get(key) else None

        return cls(workflow_id, version, index, tenant, config["url"],
                   str(config.get("method") or "GET").upper(),
                   {str(k): str(v) for k, v in (config.get("headers") or {}).items()},
                   timedelta(milliseconds=parse_duration_ms(config["interval"]) or 60_000),
                   expr("items"), expr("cursor"), expr("filter"), expr("input"),
                   float(config["rate_limit"]) if config.get("rate_limit") else None,
                   name=f"{workflow_id}:{index}")


@dataclass(frozen=True, slots=True)
class Detected:
    fire: list[tuple[str, dict[str, Any]]]  # (dedup key, input)
    cursor: str | None  # JSON text of the new cursor value
    content_hash: str | None


def _greater(a: Any, b: Any) -> bool:
    try:
        return bool(a > b)
    except TypeError:  # different types: compare their canonical JSON
        return canonical_json(a) > canonical_json(b)


def detect(source: PollSource, body: Any, cursor: str | None, content_hash: str | None
           ) -> Detected:
    """What a response fires, given the stored cursor (JSON text) or hash (pure)."""
    if source.items is not None:
        items = source.items.evaluate({"response": body})
        items = items if isinstance(items, list) else [items]
    else:
        items = body if isinstance(body, list) else [body]
    fire: list[tuple[str, dict[str, Any]]] = []

    def wanted(item: Any) -> dict[str, Any] | None:
        variables = {"item": item, "response": body, "event": item}
        if source.filter is not None and source.filter.evaluate(variables) is not True:
            return None
        if source.input is not None:
            value = source.input.evaluate(variables)
            return value if isinstance(value, dict) else {"item": value}
        return item if isinstance(item, dict) else {"item": item}

    if source.cursor is not None:
        stored = orjson.loads(cursor) if cursor is not None else None
        best = stored
        for item in items:
            value = source.cursor.evaluate({"item": item, "response": body})
            if stored is None or _greater(value, stored):
                inp = wanted(item)
                if inp is not None:
                    fire.append((f"poll:{source.trigger_index}:{canonical_json(value)}", inp))
            if best is None or _greater(value, best):
                best = value
        return Detected(fire, canonical_json(best) if best is not None else cursor, None)
    digest = hashlib.sha256(canonical_json(items).encode()).hexdigest()
    if digest != content_hash:
        inp = wanted(items if source.items is not None else body)
        if inp is not None:
            fire.append((f"poll:{source.trigger_index}:{digest}", inp))
    return Detected(fire, None, digest)


async def load_state(conn: AsyncConnection[Any], source: PollSource) -> dict[str, Any]:
    cur = await conn.execute(
        "SELECT cursor_value, content_hash, fence, failures, next_at FROM poll_state "
        "WHERE workflow_id = %s AND trigger_index = %s",
        (source.workflow_id, source.trigger_index))
    row = await cur.fetchone()
    keys = ("cursor_value", "content_hash", "fence", "failures", "next_at")
    return dict(zip(keys, row, strict=True)) if row else {
        "cursor_value": None, "content_hash": None, "fence": 0, "failures": 0, "next_at": None}


async def save_state(conn: AsyncConnection[Any], source: PollSource, token: int,
                     values: dict[str, Any]) -> bool:
    """Write the source's state unless a newer fencing token has (False then)."""
    cur = await conn.execute(
        "INSERT INTO poll_state (workflow_id, trigger_index, cursor_value, content_hash, "
        "fence, failures, last_error, next_at, polled_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (workflow_id, trigger_index) DO UPDATE SET "
        "cursor_value = EXCLUDED.cursor_value, content_hash = EXCLUDED.content_hash, "
        "fence = EXCLUDED.fence, failures = EXCLUDED.failures, "
        "last_error = EXCLUDED.last_error, next_at = EXCLUDED.next_at, "
        "polled_at = EXCLUDED.polled_at WHERE poll_state.fence <= EXCLUDED.fence "
        "RETURNING 1",
        (source.workflow_id, source.trigger_index, values["cursor_value"],
         values["content_hash"], token, values["failures"], values.get("last_error", ""),
         values["next_at"], values["polled_at"]))
    return await cur.fetchone() is not None


class Poller:
    def __init__(self, settings: Settings, *, schema: str | None = None,
                 clock: Callable[[], datetime] = utcnow,
                 secrets: Callable[[Any], Awaitable[tuple[Any, set[str]]]] | None = None
                 ) -> None:
        self.settings = settings
        self.schema = schema
        self.clock = clock
        self.secrets = secrets
        self.sources: list[PollSource] = []
        self._last_by_host: dict[str, datetime] = {}
        self.fired = 0

    async def start(self) -> None:
        self.conn = await connect(self.settings, self.schema)
        self.redis = aioredis.from_url(self.settings.redis_url)
        self.lock = FencedLock(self.redis, f"{self.settings.topic_prefix}poll:",
                               self.settings.scheduler_lock_ttl_s)
        self.http = httpx.AsyncClient(timeout=30.0, follow_redirects=True)
        self.producer = EventProducer.from_settings(self.settings, **{"linger.ms": 5})

    async def stop(self) -> None:
        await asyncio.to_thread(self.producer.close, 10.0)
        await self.http.aclose()
        await self.redis.aclose()
        await self.conn.close()

    def _rate_limited(self, source: PollSource, now: datetime) -> bool:
        if not source.rate_limit:
            return False
        host = urlsplit(source.url).netloc
        last = self._last_by_host.get(host)
        if last is not None and (now - last).total_seconds() < 1 / source.rate_limit:
            return True
        self._last_by_host[host] = now
        return False

    async def poll_due(self) -> int:
        """Poll every source that is due and whose lock this process gets; returns how
        many triggers were published."""
        fired = 0
        if self.conn.closed:  # PostgreSQL restarted: reconnect
            self.conn = await connect(self.settings, self.schema)
        for source in self.sources:
            token = await self.lock.acquire(source.name)
            if token is None:
                continue
            try:
                fired += await self._poll(source, token)
            except Exception:
                log.exception("poll source %s failed", source.name)
            finally:
                await self.lock.release(source.name, token)
        self.fired += fired
        return fired

    async def _poll(self, source: PollSource, token: int) -> int:
        state = await load_state(self.conn, source)
        now = self.clock()
        if state["next_at"] is not None and state["next_at"] > now:
            return 0
        if self._rate_limited(source, now):
            return 0
        headers: Any = source.headers
        if self.secrets is not None and headers:
            headers, _ = await self.secrets(headers)
        try:
            response = await self.http.request(source.method, source.url, headers=headers)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            failures = int(state["failures"]) + 1
            backoff = min(source.interval * (2 ** min(failures, 16)), MAX_BACKOFF)
            await save_state(self.conn, source, token, {
                **state, "failures": failures, "last_error": f"{type(exc).__name__}: {exc}",
                "next_at": now + backoff, "polled_at": now})
            log.warning("poll %s: %s (failure %d, next in %s)", source.name, exc, failures,
                        backoff)
            return 0
        found = detect(source, body, state["cursor_value"], state["content_hash"])
        events = [TriggerReceived(workflow_id=source.workflow_id, source="poll", input=inp,
                                  workflow_version=source.workflow_version, dedup_key=key,
                                  tenant=source.tenant) for key, inp in found.fire]
        if events:
            summary = await asyncio.to_thread(self.producer.publish_many, events)
            if not summary.ok:
                raise RuntimeError(f"publishing {len(events)} poll triggers failed: {summary}")
        saved = await save_state(self.conn, source, token, {
            "cursor_value": found.cursor, "content_hash": found.content_hash, "failures": 0,
            "next_at": now + source.interval, "polled_at": now})
        if not saved:
            log.warning("poll %s: a newer poller holds it; state not saved", source.name)
        return len(events)


def poll_sources(registry: TrackingRegistry) -> list[PollSource]:
    out = []
    for wid in sorted(registry.workflows):
        version, triggers = registry.active_triggers(wid, "poll")
        tenant = registry.tenants.get(wid, "default")
        out += [PollSource.from_config(wid, version, i, tenant, cfg) for i, cfg in triggers]
    return out


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """``flowlog worker poller``: follow definitions, poll due sources until ``stop``."""
    from flowlog.streams.executors.secrets import SecretResolver
    from flowlog.streams.runtime.registry import RegistryFollower

    registry = TrackingRegistry()
    follower = RegistryFollower(settings, registry)
    await follower.start()
    resolver = SecretResolver(settings)
    poller = Poller(settings, secrets=resolver.resolve_config)
    await poller.start()
    try:
        while not stop.is_set():
            if registry.take_dirty() or not poller.sources:
                poller.sources = poll_sources(registry)
            try:
                await poller.poll_due()
            except Exception:
                log.exception("poller pass failed")
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except TimeoutError:
                pass
    finally:
        await poller.stop()
        await follower.stop()
        await resolver.aclose()
