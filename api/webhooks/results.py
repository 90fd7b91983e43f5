"""Waiting for an execution's end: one consumer of ``execution-events`` per process.

It starts at the end of every partition when the gateway starts, so an execution whose
trigger is published after a waiter registered cannot finish unseen. Only records keyed by
an awaited execution id are decoded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from flowlog.schemas.codec import Codec
from flowlog.schemas.topics import TopicCatalog

from flowlog.settings import Settings

log = logging.getLogger(__name__)
TERMINAL = frozenset({"ExecutionSucceeded", "ExecutionFailed", "ExecutionCancelled",
                      "ExecutionRejected"})


class ResultWaiter:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.codec = Codec.from_settings(settings)
        self.topic = TopicCatalog.from_settings(settings).name("execution-events")
        self._waiting: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers,
                                    group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="latest")
        await consumer.start()
        parts = consumer.partitions_for_topic(self.topic)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(self.topic) or {0}
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, ends[tp])
        self._consumer = consumer
        self._task = asyncio.create_task(self._loop(), name="webhook-results")

    def expect(self, execution_id: str) -> asyncio.Future[dict[str, Any]]:
        """A future resolved with the terminal event (a decoded record); register it
        before publishing the trigger."""
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(execution_id, []).append(fut)
        return fut

    def forget(self, execution_id: str, fut: asyncio.Future[dict[str, Any]]) -> None:
        futs = self._waiting.get(execution_id, [])
        if fut in futs:
            futs.remove(fut)
        if not futs:
            self._waiting.pop(execution_id, None)

    async def _loop(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=2000)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("execution-events consumer")
                await asyncio.sleep(1)
                continue
            if not self._waiting:
                continue
            for msgs in batches.values():
                for msg in msgs:
                    key = msg.key.decode() if msg.key else None
                    if key not in self._waiting:
                        continue
                    try:
                        record = self.codec.decode(msg.value).record
                    except Exception:
                        log.exception("undecodable execution event at offset %s", msg.offset)
                        continue
                    for event in record.get("events", ()):
                        if event.get("event_type") in TERMINAL:
                            for fut in self._waiting.pop(key, []):
                                if not fut.done():
                                    fut.set_result(event)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._consumer is not None:
            await self._consumer.stop()
