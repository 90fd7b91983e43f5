"""Consumer lag per group, topic and partition, sampled from the consumers themselves.

aiokafka keeps each assigned partition's high watermark from its last fetch; lag is that
minus the consumer's position (records fetched but not yet handled count as lag). No
broker round trip: ``sample`` runs every few seconds off the hot path.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from flowlog.observability.metrics import CONSUMER_LAG

log = logging.getLogger(__name__)


class LagSampler:
    """The consumers of one process, sampled into ``flowlog_consumer_lag``."""

    def __init__(self) -> None:
        self.consumers: dict[str, Any] = {}
        self.last: dict[str, int] = {}  # group -> total lag at the last sample
        self._series: set[tuple[str, str, str]] = set()

    def watch(self, group: str, consumer: Any) -> None:
        self.consumers[group] = consumer

    async def sample(self) -> None:
        seen: set[tuple[str, str, str]] = set()
        for group, consumer in list(self.consumers.items()):
            total = 0
            try:
                assigned = consumer.assignment()
            except Exception:  # not started or already stopped
                continue
            for tp in assigned:
                try:
                    high = consumer.highwater(tp)
                    if high is None:
                        continue
                    pos = await consumer.position(tp)
                except Exception:
                    continue  # no position yet (fetching starts), or revoked meanwhile
                lag = max(0, high - pos)
                key = (group, tp.topic, str(tp.partition))
                CONSUMER_LAG.labels(*key).set(lag)
                seen.add(key)
                total += lag
            self.last[group] = total
        for key in self._series - seen:  # partitions no longer ours: drop their series
            try:
                CONSUMER_LAG.remove(*key)
            except KeyError:
                pass
        self._series = seen

    async def run(self, every_s: float = 5.0) -> None:
        while True:
            try:
                await self.sample()
            except Exception:
                log.warning("consumer lag sample failed", exc_info=True)
            await asyncio.sleep(every_s)


#: The process's sampler: roles register their consumers (``LAG.watch(group, consumer)``).
LAG = LagSampler()
