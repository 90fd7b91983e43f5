"""Offsets committed once the writes they caused are acknowledged, off the poll loop.

A role decides a polled batch, hands its sends (the producer's delivery futures) and the
batch's next offsets to the `Committer`, and polls again at once. The committer awaits the
acks in the order the batches came, then commits the newest offsets of everything acked so
far in one `commit` call. So the loop never waits for a broker round trip, and commits
batch themselves: while one commit is in flight the next batches' offsets pile up.

The guarantee stays at-least-once: an offset is committed only after every record that its
batch and all earlier batches produced is acknowledged. A send that fails is fatal
(`run` raises): the in-memory state already counts a decision the log does not hold, and
only a restart, which rebuilds from the log and re-reads from the committed offsets, is
safe. `flush` (before a revocation, at stop) waits until everything handed in is committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import OffsetAndMetadata

log = logging.getLogger(__name__)
Offsets = dict[TopicPartition, int]


class Committer:
    def __init__(self, consumer: Any, role: str, *, max_pending: int = 16,
                 on_commit_failed: Callable[[set[TopicPartition]], None] | None = None,
                 before_commit: Callable[[int], Awaitable[None] | None] | None = None) -> None:
        self.consumer = consumer
        self.role = role
        self.on_commit_failed = on_commit_failed
        self.before_commit = before_commit  # fault injection: called with the records acked
        self._pending: deque[tuple[list[Any], Offsets]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._room = asyncio.Semaphore(max_pending)
        self._task: asyncio.Task[None] | None = None
        self.commits = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.role}-committer")

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    async def add(self, sends: Iterable[Any], offsets: Offsets) -> None:
        """Queue one batch; waits only when `max_pending` batches are not yet acked."""
        if self._task is not None and self._task.done():
            self._task.result()  # a failed send or commit: raise it in the poll loop
        await self._room.acquire()
        self._pending.append((list(sends), offsets))
        self._idle.clear()
        self._wake.set()

    async def flush(self) -> None:
        """Until every batch handed in is acknowledged and its offsets committed."""
        if self._task is None or self._task.done():
            return
        waiter = asyncio.ensure_future(self._idle.wait())
        await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self._task.done():
            self._task.result()

    async def stop(self) -> None:
        try:
            await self.flush()
        finally:
            if self._task is not None:
                self._task.cancel()
                try:
                    await self._task
                except (asyncio.CancelledError, Exception):
                    pass

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            taken: list[tuple[list[Any], Offsets]] = []
            while self._pending:
                taken.append(self._pending.popleft())
            if not taken:
                if not self._pending:
                    self._idle.set()
                continue
            offsets: Offsets = {}
            acked = 0
            for sends, batch_offsets in taken:  # in order: an offset never passes a write
                for fut in sends:
                    await fut  # raises a failed send: fatal, see the module's text
                acked += len(sends)
                offsets.update(batch_offsets)
                self._room.release()
            if self.before_commit is not None:
                maybe = self.before_commit(acked)
                if maybe is not None:
                    await maybe
            await self._commit(offsets)
            if not self._pending:
                self._idle.set()

    async def _commit(self, offsets: Offsets) -> None:
        if not offsets:
            return
        owned = self.consumer.assignment()
        mine = {tp: OffsetAndMetadata(o, "") for tp, o in offsets.items() if tp in owned}
        if not mine:
            return
        try:
            await self.consumer.commit(mine)
            self.commits += 1
        except (CommitFailedError, IllegalStateError) as exc:
            # another member may own these partitions now; its rebuild reads our writes
            log.warning("%s: commit failed (%s) for %s", self.role, exc,
                        sorted(tp.partition for tp in mine))
            if self.on_commit_failed is not None:
                self.on_commit_failed(set(mine))
