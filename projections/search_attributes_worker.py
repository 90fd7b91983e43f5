"""`flowlog worker search-attributes`: the evaluator of search attributes.

Each round: evaluate the executions the read-model projector queued (live path), then
advance each attribute still backfilling by one batch. Any number of processes may run
(every write is idempotent and seq-guarded; a backfill batch locks its declaration row).
An expression that fails for an execution is recorded on that execution's value row (and
counted in `flowlog search-attributes list`); it never stops this process. Without the
audit store (`flowlog worker audit` never ran) it waits and says so.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from flowlog.projections import search_attributes_store as store

from flowlog.settings import Settings

log = logging.getLogger(__name__)

BATCH = 200
IDLE_S = 0.5


class Evaluator:
    """One connection and the audit store (synchronous; run on a thread)."""

    def __init__(self, settings: Settings, schema: str | None = None) -> None:
        self.settings = settings
        self.schema = schema or settings.pg_schema
        self.conn: Any = None
        self.audit: Any = None
        self.source: store.EventSource = store.one_by_one(lambda _: [])

    def open(self) -> None:
        from flowlog.projections.audit.store import AuditStore

        if self.conn is None:
            self.conn = store.connect(self.settings.pg_dsn, self.schema)
        if self.audit is None:
            self.audit = AuditStore(self.settings, self.schema, readonly=True)
            self.source = store.audit_source(self.audit)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.audit is not None:
            self.audit.close()
            self.audit = None

    def round(self) -> int:
        """One round; returns how many evaluations it made (0: idle)."""
        self.open()
        done, _waiting = store.drain_pending(self.conn, self.source, BATCH)
        names = [r[0] for r in self.conn.execute(
            "SELECT name FROM search_attributes WHERE state = 'backfilling' ORDER BY name")]
        for name in names:
            res = store.backfill_batch(self.conn, self.source, name, BATCH)
            done += res.evaluated + res.waiting + (1 if res.finished else 0)
        return done


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Serve until `stop` is set."""
    ev = Evaluator(settings)
    delay = IDLE_S
    try:
        while not stop.is_set():
            try:
                busy = await asyncio.to_thread(ev.round)
                delay = IDLE_S
            except Exception as exc:  # PostgreSQL restarting, audit store missing, a bug
                log.warning("search attributes: round failed (%s: %s); retrying in %.1fs",
                            type(exc).__name__, exc, delay)
                await asyncio.to_thread(ev.close)
                busy = 0
                delay = min(delay * 2, 10.0)
            if not busy:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
    finally:
        await asyncio.to_thread(ev.close)
