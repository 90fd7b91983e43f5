"""What each webhook path accepts, compiled once from ``webhook_registrations`` rows.

The gateway keeps every registration in memory and re-reads the table every
``webhook_refresh_s`` (the table is small; the registrar in ``streams/triggers`` writes it).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from flowlog.aggregates.definition.model import SECRET_REF, parse_duration_ms
from flowlog.aggregates.expressions import Expression, compile_expression
from psycopg import AsyncConnection

from flowlog.settings import Settings

log = logging.getLogger(__name__)
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Registration:
    path: str
    workflow_id: str
    workflow_version: int
    trigger_index: int
    tenant: str
    method: str
    secret_ref: str | None  # the secret's name; None: callers need an API key
    tolerance_s: float
    headers: dict[str, str]  # lower-cased name -> required value
    allow_ips: tuple[IpNetwork, ...]
    max_body: int
    per_ip: float
    per_key: float
    input: Expression | None
    dedup: Expression | None
    config: dict[str, Any] = field(default_factory=dict)

    def ip_allowed(self, host: str | None) -> bool:
        if not self.allow_ips:
            return True
        try:
            addr = ipaddress.ip_address(host or "")
        except ValueError:
            return False
        return any(addr in net for net in self.allow_ips)


def compile_registration(row: dict[str, Any], settings: Settings) -> Registration:
    cfg: dict[str, Any] = row["config"] or {}
    secret = SECRET_REF.fullmatch(str(cfg.get("secret") or "").strip())
    tolerance = parse_duration_ms(cfg.get("tolerance"))
    limits = cfg.get("rate_limit") or {}
    return Registration(
        path=row["path"], workflow_id=row["workflow_id"],
        workflow_version=int(row["workflow_version"]), trigger_index=int(row["trigger_index"]),
        tenant=row["tenant"], method=row["method"],
        secret_ref=secret.group(1) if secret else None,
        tolerance_s=tolerance / 1000 if tolerance else float(settings.webhook_tolerance_s),
        headers={str(k).lower(): str(v) for k, v in (cfg.get("headers") or {}).items()},
        allow_ips=tuple(ipaddress.ip_network(n, strict=False)
                        for n in ([cfg["allow_ips"]] if isinstance(cfg.get("allow_ips"), str)
                                  else cfg.get("allow_ips") or [])),
        max_body=min(int(cfg.get("max_body") or settings.webhook_max_body_bytes),
                     settings.webhook_max_body_bytes),
        per_ip=float(limits.get("per_ip") or settings.webhook_rate_per_ip),
        per_key=float(limits.get("per_key") or settings.webhook_rate_per_key),
        input=compile_expression(cfg["input"]) if cfg.get("input") else None,
        dedup=compile_expression(cfg["dedup"]) if cfg.get("dedup") else None,
        config=cfg,
    )


class RegistrationCache:
    """Path → registration, refreshed from PostgreSQL in the background."""

    def __init__(self, settings: Settings, schema: str | None = None) -> None:
        self.settings = settings
        self.schema = schema or settings.pg_schema
        self.by_path: dict[str, Registration] = {}
        self._task: asyncio.Task[None] | None = None
        self._conn: AsyncConnection[Any] | None = None
        self.loaded = asyncio.Event()

    def get(self, path: str) -> Registration | None:
        return self.by_path.get(path.strip("/"))

    async def refresh(self) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = await AsyncConnection.connect(
                self.settings.pg_dsn, autocommit=True,
                options=f"-c search_path={self.schema}")
        cur = await self._conn.execute(
            "SELECT path, workflow_id, workflow_version, trigger_index, tenant, method, "
            "config FROM webhook_registrations")
        cols = [c.name for c in cur.description or ()]
        fresh: dict[str, Registration] = {}
        for values in await cur.fetchall():
            row = dict(zip(cols, values, strict=True))
            old = self.by_path.get(row["path"])
            if old is not None and old.config == row["config"] and \
                    old.workflow_version == row["workflow_version"]:
                fresh[row["path"]] = old
                continue
            try:
                fresh[row["path"]] = compile_registration(row, self.settings)
            except Exception:
                log.exception("webhook %s: bad registration, not served", row["path"])
        self.by_path = fresh
        self.loaded.set()

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="webhook-registrations")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.webhook_refresh_s)
            try:
                await self.refresh()
            except Exception:
                log.exception("webhook registrations: refresh failed (serving the last ones)")
                if self._conn is not None:
                    await self._conn.close()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._conn is not None:
            await self._conn.close()


SecretLookup = Callable[[str], Awaitable[str]]
