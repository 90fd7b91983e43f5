"""Offsets committed once the writes they caused are acknowledged, off the poll loop.

A role decides a polled batch, hands its sends (the producer's delivery futures) and the
batch's next offsets to the `Committer`, and polls again at once. The committer awaits the
acks in the order the batches came, as they come, and commits the newest offsets of
everything acked so far at most every `interval_s` (`FLOWLOG_COMMIT_INTERVAL_MS`, as Kafka
Streams' `commit.interval.ms`). So the loop never waits for a broker round trip, and the
broker, which shares the machine, is not asked for a commit per poll (measured: a commit
per poll, off the loop, cost more CPU than it saved latency).

The guarantee stays at-least-once: an offset is committed only after every record that its
batch and all earlier batches produced is acknowledged. A send that fails is fatal
(`run` raises): the in-memory state already counts a decision the log does not hold, and
only a restart, which rebuilds from the log and re-reads from the committed offsets, is
safe. `flush` (before a revocation, at stop) waits until everything handed in before the
call is acknowledged and committed (batches added meanwhile, by another partition's worker
of the processor, do not hold it back).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata

log = logging.getLogger(__name__)
Offsets = dict[TopicPartition, int]


class Committer:
    def __init__(self, consumer: Any, role: str, *, interval_s: float = 0.1,
                 max_pending: int = 16,
                 on_commit_failed: Callable[[set[TopicPartition]], None] | None = None,
                 before_commit: Callable[[int], Awaitable[None] | None] | None = None) -> None:
        self.consumer = consumer
        self.role = role
        self.on_commit_failed = on_commit_failed
        self.before_commit = before_commit  # fault injection: called with the records acked
        self.interval_s = interval_s  # commits are requests the broker pays for: not too many
        self._last_commit = 0.0
        self._pending: deque[tuple[list[Any], Offsets]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._room = asyncio.Semaphore(max_pending)
        self._flushing = 0
        self._added = 0  # batches handed in
        self._done = 0  # batches acknowledged and committed (or with nothing to commit)
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.role}-committer")

    def raise_if_failed(self) -> None:
        """Raise a failed send here, in the poll loop: it ends the role (a restart rebuilds)."""
        if self._task is not None and self._task.done():
            self._task.result()

    async def add(self, sends: Iterable[Any], offsets: Offsets) -> None:
        """Queue one batch; waits only when `max_pending` batches are not yet acked."""
        self.raise_if_failed()
        await self._room.acquire()
        self._idle.clear()
        self._pending.append((list(sends), offsets))
        self._added += 1
        self._wake.set()

    async def flush(self) -> None:
        """Until every batch handed in before this call is acknowledged and its offsets
        committed."""
        if self._task is None or self._task.done():
            return
        target = self._added
        self._flushing += 1
        self._wake.set()
        try:
            while self._done < target and not self._task.done():
                self._progress.clear()
                waiter = asyncio.ensure_future(self._progress.wait())
                await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
        finally:
            self._flushing -= 1
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
        loop = asyncio.get_running_loop()
        acked: Offsets = {}
        records = 0
        popped = 0
        while True:
            self._wake.clear()  # before looking: an `add` from here on wakes the waits below
            while self._pending:  # acks as they come (frees room for the loop at once)
                sends, batch_offsets = self._pending[0]
                if acked and self._flushing and not all(
                        isinstance(f, asyncio.Future) and f.done() for f in sends):
                    break  # a flush waits for the batches before it: commit those first
                for fut in sends:  # in order: an offset never passes a write before it
                    await fut  # raises a failed send: fatal, see the module's text
                self._pending.popleft()
                self._room.release()
                popped += 1
                records += len(sends)
                acked.update(batch_offsets)
            if acked:
                wait = self._last_commit + self.interval_s - loop.time()
                if wait > 0 and not self._flushing:
                    try:  # let offsets pile up: commits are requests the broker pays for
                        await asyncio.wait_for(self._wake.wait(), wait)
                    except TimeoutError:
                        pass
                    continue
                if self.before_commit is not None:
                    maybe = self.before_commit(records)
                    if maybe is not None:
                        await maybe
                await self._commit(acked)
                self._last_commit = loop.time()
                acked, records = {}, 0
                self._mark(popped)
                continue
            self._mark(popped)
            self._idle.set()
            await self._wake.wait()

    def _mark(self, done: int) -> None:
        if done != self._done:
            self._done = done
            self._progress.set()

    async def _commit(self, offsets: Offsets) -> None:
        if not offsets:
            return
        owned = self.consumer.assignment()
        mine = {tp: o for tp, o in offsets.items() if tp in owned}
        if not mine:
            return
        outcome = await commit_offsets(self.consumer, mine, self.role)
        if outcome == "committed":
            self.commits += 1
        elif outcome == "lost" and self.on_commit_failed is not None:
            # another member may own these partitions now; its rebuild reads our writes
            self.on_commit_failed(set(mine))


CommitOutcome = Literal["committed", "lost", "not_made"]


async def commit_offsets(consumer: Any, offsets: Offsets, role: str) -> CommitOutcome:
    """Commit ``offsets`` (the next offset per partition); never raises a Kafka error.

    Every role commits through this (the `Committer`, the executor), so a commit failure
    means the same everywhere:

    * `lost` (`CommitFailedError`, `IllegalStateError`): the group rebalanced; another member
      may own these partitions now and re-reads from its last commit (the caller drops what
      it holds for them);
    * `not_made` (any other `KafkaError`: the coordinator moved, the connection dropped, a
      timeout): not a loss, the writes are acknowledged; the next commit of the partition
      supersedes it, and if none comes a restart re-reads those inputs, which the ids make
      duplicates. The role goes on.
    """
    try:
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
    except (CommitFailedError, IllegalStateError) as exc:
        log.warning("%s: commit failed (%s) for %s", role, exc,
                    sorted(tp.partition for tp in offsets))
        return "lost"
    except KafkaError as exc:
        log.warning("%s: commit not made (%s); retried with the next one", role, exc)
        return "not_made"
    return "committed"


async def poll_loop(consumer: Any, committer: Committer, lock: asyncio.Lock,
                    handle: Callable[[dict[TopicPartition, list[Any]]], Awaitable[None]],
                    ) -> None:
    """A role's loop over a started consumer: each polled batch is handled under `lock`
    (so a revocation waits for it), and its writes go to `committer`. On the way out the
    committer is flushed and stopped, then the consumer."""
    committer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            if batches:
                async with lock:
                    await handle(batches)
            else:
                committer.raise_if_failed()
    finally:
        # bounded: a stop that hangs (a rebalance in progress, a broker gone) must not keep
        # the process from ending; the group expires the member after its session timeout
        try:
            await _bounded(committer.stop(), "flushing the committer")
        finally:
            await _bounded(consumer.stop(), "leaving the consumer group")


STOP_TIMEOUT_S = 30.0


async def _bounded(step: Awaitable[None], what: str) -> None:
    try:
        await asyncio.wait_for(step, STOP_TIMEOUT_S)
    except TimeoutError:
        log.warning("stopping a role: %s took more than %.0fs; going on", what, STOP_TIMEOUT_S)
