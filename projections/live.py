"""Live status on Redis pub/sub, published after each committed batch.

Channels (``P`` is the topic prefix, ``flowlog.`` by default, so test runs stay apart):

* ``P status.<execution_id>``: every status change of one execution;
* ``P status``: every status change of every execution (a firehose for dashboards).

Message: JSON ``{"id": <last seq>, "execution_id", "workflow_id", "tenant", "status",
"seq"}``. ``id`` is the execution's last applied seq: it only grows, so the query API can
use it as the SSE event id and, after a reconnect with ``Last-Event-ID``, send the current
row when its ``last_seq`` is newer than the id the client had. Pub/sub is at-most-once (a
subscriber that was away misses messages): the read model is the truth, this is a nudge.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson

from flowlog.observability import hooks, logs, tracing
from flowlog.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StatusChange:
    execution_id: str
    workflow_id: str
    tenant: str
    status: str
    seq: int

    def message(self) -> bytes:
        return orjson.dumps({"id": self.seq, "execution_id": self.execution_id,
                             "workflow_id": self.workflow_id, "tenant": self.tenant,
                             "status": self.status, "seq": self.seq})


def channel_all(settings: Settings) -> str:
    return f"{settings.topic_prefix}status"


def channel_of(settings: Settings, execution_id: str) -> str:
    return f"{settings.topic_prefix}status.{execution_id}"


class LivePublisher:
    """Publishes status changes; Redis being away is logged, never fatal."""

    def __init__(self, settings: Settings, enabled: bool = True) -> None:
        self.settings = settings
        self.enabled = enabled
        self._redis: Any = None

    async def publish(self, changes: list[StatusChange],
                      parents: dict[str, tracing.Headers] | None = None) -> None:
        """Publish the changes of one committed batch; ``parents`` (execution id -> trace
        headers of the projector's span) makes each publish a span of that trace."""
        if not self.enabled or not changes:
            return
        spans: hooks.Projected = []
        for c in changes:
            headers = (parents or {}).get(c.execution_id)
            spans.append((c, tracing.begin("projector live", headers, {
                "flowlog.execution_id": c.execution_id, "flowlog.status": c.status},
                execution_id=c.execution_id)))
        failed: BaseException | None = None
        try:
            if self._redis is None:
                import redis.asyncio as aioredis

                self._redis = aioredis.Redis.from_url(self.settings.redis_url)
            pipe = self._redis.pipeline(transaction=False)
            everyone = channel_all(self.settings)
            for c in changes:
                msg = c.message()
                pipe.publish(channel_of(self.settings, c.execution_id), msg)
                pipe.publish(everyone, msg)
            await pipe.execute()
        except Exception as exc:
            failed = exc
            log.warning("live status not published (%s); readers fall back to the tables", exc)
            await self.close()
        finally:
            debug = log.isEnabledFor(logging.DEBUG)
            for c, hop in spans:
                if failed is not None:
                    hop.error(failed)
                hop.end()
                if debug:
                    with logs.execution(c.execution_id, c.workflow_id, c.tenant, hop.trace_id):
                        log.debug("live: %s %s (seq %s)", "not published" if failed
                                  else "published", c.status, c.seq)

    async def close(self) -> None:
        if self._redis is not None:
            try:
                await self._redis.aclose()
            except Exception:
                pass
            self._redis = None
